// SPDX-License-Identifier: Apache-2.0
// Conditional requests on objects (RFC 9110 section 13.2.2 order): If-Match, then
// If-Unmodified-Since when If-Match is absent, then If-None-Match, then If-Modified-Since when
// If-None-Match is absent. Pure: the caller answers 412, or 304 with the validators, or the
// object. Dates compare in whole seconds, as Last-Modified carries them (rounded up, as Swift).

export interface Conditions {
  readonly ifMatch?: string | undefined;
  readonly ifNoneMatch?: string | undefined;
  readonly ifModifiedSince?: string | undefined;
  readonly ifUnmodifiedSince?: string | undefined;
}

export interface Validators {
  /** Unquoted. */
  readonly etag: string;
  /** Last-Modified in whole seconds since the epoch. */
  readonly lastModifiedSeconds: number;
}

export type Outcome = 'proceed' | 'not-modified' | 'precondition-failed';

/** The entity tags of an If-Match / If-None-Match list; '*' stays '*'. Weak tags compare weakly. */
export function etagList(text: string): string[] {
  return text
    .split(',')
    .map((part) => part.trim().replace(/^W\//, ''))
    .filter((part) => part !== '')
    .map((part) =>
      part.length >= 2 && part.startsWith('"') && part.endsWith('"') ? part.slice(1, -1) : part,
    );
}

function matches(list: string, etag: string): boolean {
  return etagList(list).some((tag) => tag === '*' || tag === etag);
}

/** Seconds since the epoch of an HTTP date, or undefined when it does not parse (ignored). */
function seconds(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

export function evaluate(conditions: Conditions, v: Validators, safeMethod: boolean): Outcome {
  if (conditions.ifMatch !== undefined) {
    if (!matches(conditions.ifMatch, v.etag)) return 'precondition-failed';
  } else {
    const since = seconds(conditions.ifUnmodifiedSince);
    if (since !== undefined && v.lastModifiedSeconds > since) return 'precondition-failed';
  }
  if (conditions.ifNoneMatch !== undefined) {
    if (matches(conditions.ifNoneMatch, v.etag)) {
      return safeMethod ? 'not-modified' : 'precondition-failed';
    }
  } else if (safeMethod) {
    const since = seconds(conditions.ifModifiedSince);
    if (since !== undefined && v.lastModifiedSeconds <= since) return 'not-modified';
  }
  return 'proceed';
}
