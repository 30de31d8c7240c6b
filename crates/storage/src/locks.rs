//! Lock helpers that shrug off poisoning.
//!
//! Nothing in this crate panics while holding a lock (no `unwrap`, bounds-checked
//! slicing only on lengths checked just before), so a poisoned lock can only come from a
//! bug elsewhere in the same thread; the protected data is still consistent, so we keep
//! serving instead of propagating the panic to every later caller.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
