//! `TCP_NODELAY` on the connections vercel_runtime serves, which it does
//! not set and gives no way to set: its `run` binds the listener and
//! accepts the connections itself.
//!
//! Without it, a write that follows an unacknowledged one waits for the
//! client's delayed ACK under Nagle's algorithm (RFC 896; 40 ms on Linux):
//! the last chunk of a streamed answer (longer than what the relay reads
//! ahead, or an event stream) stalled so. Complete answers go out in one
//! write with `Content-Length` anyway (`relay::body`); this covers the rest.
//!
//! On Linux an accepted socket inherits `TCP_NODELAY` from its listener, so
//! setting it on the listener, then on the connections already accepted,
//! covers every connection. The sockets are reached by duplicating this
//! process's own descriptors (`pidfd_getfd`, Linux 5.6), which needs no
//! unsafe code; a duplicate shares the socket, so the option holds for both.

use std::io;

use rustix::net::{getsockname, sockopt};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

/// Sets `TCP_NODELAY` on every TCP socket of this process bound to local
/// `port` (the listener, and the connections it accepted); returns how many.
pub(crate) fn serve_without_nagle(port: u16) -> io::Result<usize> {
    let this = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
        // A descriptor closed meanwhile (the directory's own included) is skipped.
        let Ok(socket) = pidfd_getfd(&this, fd, PidfdGetfdFlags::empty()) else { continue };
        let Some(local) = getsockname(&socket).ok().and_then(|a| std::net::SocketAddr::try_from(a).ok()) else {
            continue;
        };
        if local.port() == port && sockopt::set_tcp_nodelay(&socket, true).is_ok() {
            set += 1;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listener_and_its_connections_get_nodelay_and_later_ones_inherit_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let early = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (accepted_early, _) = listener.accept().await.unwrap();
        assert!(!accepted_early.nodelay().unwrap(), "Nagle is on by default");

        let set = serve_without_nagle(port).unwrap();
        assert_eq!(set, 2, "the listener and the connection it accepted");
        assert!(accepted_early.nodelay().unwrap());
        assert!(!early.nodelay().unwrap(), "the client's end, bound to another port, is left alone");

        let _late = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (accepted_late, _) = listener.accept().await.unwrap();
        assert!(accepted_late.nodelay().unwrap(), "inherited from the listener");
    }
}
