// Placeholder: the Redis server for integration tests is started here (see the Redis store work).
export default function setup(): void {}
