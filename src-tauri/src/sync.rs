//! Locking that survives a panic elsewhere, shared by every owner of app state.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, going on after a panic elsewhere: every critical section leaves the
/// data consistent, so a poisoned lock holds nothing half-written.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
