/**
 * Checks of a request's fields that both the HTTP routes and the Router API make, defined once so the
 * message and `param` are the same whichever refuses first (the route checks `model` before the key's
 * model allow-list; the Router checks it for callers of the library API).
 */
import { InvalidRequestError } from './errors.js';

/** `model` is a non-empty string, or a 400 naming `model`. */
export function checkModelParam(model: unknown): asserts model is string {
  if (typeof model !== 'string' || model === '') {
    throw new InvalidRequestError('model is required and must be a string.', { param: 'model' });
  }
}
