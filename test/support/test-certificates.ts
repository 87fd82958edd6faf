/**
 * Certificates for TLS tests, made with openssl in a directory the caller owns: a CA, a server
 * certificate it signed for 127.0.0.1 and localhost, and a second CA that signed nothing the server
 * presents (a client trusting only it must refuse the server).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificates {
  /** The CA that signed the server certificate (PEM file). */
  ca: string;
  /** A CA that signed nothing the server presents. */
  otherCa: string;
  serverCert: string;
  serverKey: string;
}

export async function makeCertificates(dir: string): Promise<TestCertificates> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir, timeout: 30_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=triage test CA');
  await openssl('req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.crt', '-days', '2', '-subj', '/CN=another CA');
  await openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext');
  return { ca: join(dir, 'ca.crt'), otherCa: join(dir, 'other-ca.crt'), serverCert: join(dir, 'server.crt'), serverKey: join(dir, 'server.key') };
}
