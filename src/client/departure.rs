//! The caller's say at the moment only the transport can see: right before a request is written to a
//! connection.
//!
//! The writer decides whether a request may still leave at the last moment, not before it waits for a
//! connection: a run that stopped meanwhile (Ctrl-C, a rejected token) must send nothing more. Connecting,
//! the keep-alive race's second connection and every 307/308 hop all come before a write, so each asks
//! again.

use std::future::Future;

/// Asked by the client before each write of a request. `()` clears every request.
pub trait Departure: Sync {
    /// Called once a connection is ready, right before the request is written to it (again for each hop or
    /// new connection). `false` withholds the request: nothing is written, and the attempt fails with
    /// [`super::SendError::Withheld`].
    fn cleared(&self) -> impl Future<Output = bool> + Send;
}

impl Departure for () {
    fn cleared(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }
}
