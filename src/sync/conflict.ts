// SPDX-License-Identifier: Apache-2.0
// Names of conflict copies. When both sides changed a file, the remote version keeps the name and
// the local version is renamed, Dropbox-style, to
//
//     STEM (conflict from HOST YYYY-MM-DD HH-MM-SS).EXT        e.g. "notes (conflict from
//                                                                  laptop 2025-01-31 14-05-09).txt"
//
// in the same folder (the date is UTC; '-' instead of ':' so the name is valid everywhere), then
// synced like any new file, so every machine ends up with both versions. The extension stays last
// so the copy still opens with the same program. Names already taken get " 2", " 3", ... added.
import { hostname } from 'node:os';

/** Candidates tried before giving up (a folder with that many conflicts of one file). */
const attemptsMax = 1000;

export function conflictName(
  path: string,
  taken: (candidate: string) => boolean,
  now: Date = new Date(),
  host: string = hostname(),
): string {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const base = path.slice(slash + 1);
  const dot = base.lastIndexOf('.');
  // A leading dot (".bashrc") is a name, not an extension.
  const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
  const date = now.toISOString().slice(0, 19).replace('T', ' ').replaceAll(':', '-');
  const safeHost = host.replace(/[/\\\0]/g, '_') || 'unknown-host';
  const label = `${stem} (conflict from ${safeHost} ${date}`;
  for (let n = 1; n <= attemptsMax; n++) {
    const candidate = `${dir}${label}${n === 1 ? '' : ` ${n}`})${ext}`;
    if (!taken(candidate)) return candidate;
  }
  throw new Error(`${path}: more than ${attemptsMax} conflict copies`);
}
