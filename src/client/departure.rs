//! The caller's say at the two moments only the transport can see: right before a request is written to a
//! connection, and right when an answer's status arrives.
//!
//! The writer decides whether a request may still leave at the last moment, not before it waits for a
//! connection: a run that stopped meanwhile (Ctrl-C, a rejected token) must send nothing more, and feedback's
//! in-flight mark is written then, so a crash leaves no mark for a request that never left. Connecting, the
//! keep-alive race's second connection and every 307/308 hop all come before a write, so each asks again.
//!
//! An answer's status can arrive well before its body (a server that writes them separately, behind Nagle's
//! algorithm and a delayed ACK, takes 40 ms more for the body): a 401 stops the run when its status line
//! arrives, not when its body has been read.

use std::future::Future;

use reqwest::StatusCode;

/// Asked by the client around each write of a request. `()` clears every request and ignores answers.
pub trait Departure: Sync {
    /// Called once a connection is ready, right before the request is written to it (again for each hop or
    /// new connection). `false` withholds the request: nothing is written, and the attempt fails with
    /// [`super::SendError::Withheld`].
    fn cleared(&self) -> impl Future<Output = bool> + Send;

    /// Called when an answer's status line and headers have arrived, before its body is read.
    fn answered(&self, _status: StatusCode) {}
}

impl Departure for () {
    fn cleared(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }
}
