//! Runs a future that never waits (an in-memory body, a service that
//! answers at once) without a runtime: one poll with a waker that does
//! nothing.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the future waited, but everything it needs is in memory"),
    }
}
