//! The allocator's settings. The binary and the benches use mimalloc; by default it gives
//! freed memory back to the OS a second after it was freed, which with four first syncs at
//! once keeps the hub's RSS near their combined high-water mark. [`tune`] shortens that.

#![allow(unsafe_code)]

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// mimalloc v3's `mi_option_purge_delay` (libmimalloc-sys 0.1.49 has no constant for it;
/// the test below checks it is the option whose default is 1,000 ms).
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays with mimalloc before it goes back to the OS, in milliseconds
/// (mimalloc's default: 1,000). Measured with `cargo bench --bench firm`, 100 users: the
/// peak RSS of the initial sync falls from about 428 to 349 MiB.
pub const PURGE_DELAY_MS: i64 = 50;

/// Apply the hub's allocator settings (call first thing in `main`).
pub fn tune() {
    // SAFETY: setting an option is a plain store into mimalloc's option table.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as _) }
}

/// The purge delay in force, in milliseconds.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reading an option.
    unsafe { mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_tuned_is_the_purge_delay() {
        // Its documented default, before anything sets it (nothing in the library does).
        assert_eq!(super::purge_delay_ms(), 1_000);
    }
}
