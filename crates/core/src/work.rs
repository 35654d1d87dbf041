//! A count of the steps taken by the loops that read attacker-controlled
//! text (encoded words, header parameters, percent escapes, forwarding
//! headers), for the complexity tests: they compare the count for a
//! crafted input with the count for a plain one of the same size.
//!
//! Compiled in the crate's own tests and with the `test-util` feature
//! (read by `test_util::work_steps`, for the growth tests of the whole
//! path); elsewhere `tick` is empty and vanishes.

#[cfg(any(test, feature = "test-util"))]
thread_local! {
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` steps (bytes looked at, items visited).
#[inline(always)]
pub(crate) fn tick(n: usize) {
    #[cfg(any(test, feature = "test-util"))]
    STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(any(test, feature = "test-util")))]
    let _ = n;
}

/// The steps counted on this thread so far.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn steps() -> u64 {
    STEPS.with(|s| s.get())
}

/// Runs `f` and returns its result with the steps it counted.
#[cfg(test)]
pub(crate) fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = steps();
    let result = f();
    (result, steps() - before)
}

/// Checks that `run` counts a linear number of steps on `input(n)`: at
/// most `per_byte` steps per input byte, and not growing (beyond noise)
/// from `n` to `10 * n`. Quadratic work would show ten times as many
/// steps per byte at the larger size.
#[cfg(test)]
pub(crate) fn assert_linear<I: AsRef<[u8]>>(
    what: &str,
    n: usize,
    per_byte: f64,
    input: impl Fn(usize) -> I,
    run: impl Fn(&I),
) {
    let steps = |n: usize| {
        let input = input(n);
        let ((), steps) = measure(|| run(&input));
        steps as f64 / input.as_ref().len() as f64
    };
    let (small, large) = (steps(n), steps(10 * n));
    assert!(
        large <= per_byte && large <= small * 1.5,
        "{what}: {small:.2} then {large:.2} steps per byte (at most {per_byte})"
    );
}
