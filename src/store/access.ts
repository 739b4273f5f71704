// SPDX-License-Identifier: Apache-2.0
// The one place that decides who may do what. Sharing (ACLs, groups, public objects) extends
// this module; nothing else decides rights.
//
// Today, as Swift's tempauth has it without ACLs:
// - the superuser (an admin of the "admin" account) may do anything in every account;
// - an account admin (the account's own token, NAME:NAME made by `account create --key`, users
//   made with `--admin`) may do anything in its account: 'manage' covers account and container
//   metadata, creating and deleting containers, and users;
// - a plain member ('read' and 'write') may list, read and write objects in its account's
//   containers. (tempauth gives members nothing without container ACLs; ACLs come with the
//   sharing issue, which will narrow members to what the ACLs grant.)
import { StoreError } from '../core/errors.js';
import type { Principal } from './api.js';

export type Access = 'read' | 'write' | 'manage';

export function checkAccount(caller: Principal, account: string, access: Access): void {
  if (caller.superuser) return;
  if (caller.account !== account) {
    throw new StoreError('PERMISSION', `${caller.account} has no access to account ${account}`);
  }
  if (access === 'manage' && !caller.admin) {
    throw new StoreError(
      'PERMISSION',
      `${caller.account}:${caller.user} is not an admin of account ${account}`,
    );
  }
}

/** Creating users inside `account`: superusers, and that account's admins. */
export function checkUserAdmin(caller: Principal, account: string): void {
  checkAccount(caller, account, 'manage');
}

export function checkSuperuser(caller: Principal, what: string): void {
  if (!caller.superuser) throw new StoreError('PERMISSION', `only the admin account may ${what}`);
}
