// SPDX-License-Identifier: Apache-2.0
// Input checks at the edge: every body, parameter and query goes through a zod schema once and
// comes out typed. A failure is StoreError INVALID (400) naming the field and the rule.
import { z } from 'zod';
import { StoreError } from '../../core/errors.js';
import {
  batchCountMax,
  nameLengthMax,
  sectorSizeBytes,
  volumeBytesMax,
  volumeBytesMin,
} from '../../core/limits.js';

/** Account, volume, snapshot and container names. */
export const nameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(nameLengthMax, `must be at most ${nameLengthMax} characters`)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    'must start with a letter or digit and contain only letters, digits, ".", "_" and "-"',
  );

/** A byte offset or length: a non-negative safe integer. */
export const byteCountSchema = z
  .number({ invalid_type_error: 'must be a number' })
  .int('must be an integer')
  .nonnegative('must not be negative')
  .max(Number.MAX_SAFE_INTEGER, 'must be a safe integer');

export const volumeSizeSchema = byteCountSchema
  .min(volumeBytesMin, `must be at least ${volumeBytesMin} bytes`)
  .max(volumeBytesMax, `must be at most ${volumeBytesMax} bytes (16 TiB)`)
  .refine((n) => n % sectorSizeBytes === 0, `must be a multiple of ${sectorSizeBytes} bytes`);

export const countSchema = z
  .number({ invalid_type_error: 'must be a number' })
  .int('must be an integer')
  .min(1, 'must be at least 1')
  .max(batchCountMax, `must be at most ${batchCountMax}`);

/** A decimal integer in a query string (no sign, no exponent, no fraction). */
export const queryByteCountSchema = z
  .string()
  .regex(/^\d{1,16}$/, 'must be a non-negative decimal integer')
  .transform(Number)
  .pipe(byteCountSchema);

export const flagSchema = z
  .enum(['0', '1', 'true', 'false'], { message: 'must be 0, 1, true or false' })
  .transform((text) => text === '1' || text === 'true');

/** Parse `input` with `schema` or throw INVALID naming what was wrong and where. */
export function parseInput<S extends z.ZodTypeAny>(
  schema: S,
  input: unknown,
  where: string,
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new StoreError('INVALID', `invalid ${where}: ${describeIssues(result.error)}`);
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const field = issue.path.join('.');
      return field === '' ? issue.message : `${field} ${issue.message}`;
    })
    .join('; ');
}
