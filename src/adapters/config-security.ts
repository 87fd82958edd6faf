/**
 * general_settings that make LiteLLM check callers in ways Triage does not implement (JWTs, custom
 * auth code, route and IP allow-lists, a different key header). Ignoring one would run the gateway
 * more open than the file asked, so each refuses the start, naming the setting, unless the operator
 * passes --allow-unenforced-auth (then each is a warning). Settings that would make LiteLLM more open
 * than Triage (public_routes) only warn: Triage stays closed.
 */
import { childPath, isAbsent, isMap, type RawMap } from './config-checks.js';
import type { ConfigIssue } from '../core/config-types.js';

/** Each auth setting Triage does not enforce, and what it asks LiteLLM to do. */
export const UNENFORCED_AUTH_SETTINGS: Readonly<Record<string, string>> = {
  enable_jwt_auth: 'accept and check JWTs',
  litellm_jwtauth: 'check JWT claims',
  custom_auth: 'run custom auth code',
  custom_auth_settings: 'run custom auth code',
  custom_sso: 'run custom SSO code',
  enable_oauth2_auth: 'check OAuth2 tokens',
  enable_oauth2_proxy_auth: 'trust an OAuth2 proxy',
  oauth2_config_mappings: 'check OAuth2 tokens',
  allowed_routes: 'serve only the listed routes',
  admin_only_routes: 'keep the listed routes to the admin',
  allowed_ips: 'accept only the listed client IPs',
  litellm_key_header_name: 'read the key from another header',
  enforce_user_param: 'refuse requests without a `user`',
  enforced_params: 'refuse requests without the listed params',
};

/** A setting left at a value that asks for nothing (false, empty) is no request for auth. */
function asksForSomething(value: unknown): boolean {
  if (isAbsent(value) || value === false || value === '' || value === 'false' || value === 'False') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isMap(value)) return Object.keys(value).length > 0;
  return true;
}

/** The unenforced auth settings `general` sets: issues, or warnings when `allow` (--allow-unenforced-auth). */
export function checkUnenforcedAuth(general: RawMap, allow: boolean, issues: ConfigIssue[], warnings: ConfigIssue[]): void {
  for (const [key, what] of Object.entries(UNENFORCED_AUTH_SETTINGS)) {
    if (!asksForSomething(general[key])) continue;
    const path = childPath('general_settings', key);
    if (allow) {
      warnings.push({ path, message: `asks LiteLLM to ${what}; Triage does not, and runs without it (--allow-unenforced-auth)` });
    } else {
      issues.push({
        path,
        message: `asks LiteLLM to ${what}; Triage does not implement it and refuses to start rather than run more open than the file asks (remove it, or start with --allow-unenforced-auth)`,
      });
    }
  }
}

/** The general_settings keys this module reads (appended to the loader's known keys, so they are not "unknown"). */
export const AUTH_SETTING_KEYS = Object.keys(UNENFORCED_AUTH_SETTINGS);
