//! Opening the TCP connection, optionally from a chosen local address.
//!
//! A load generator that opens more than ~14,000 connections from one address to one
//! server port runs into the kernel's ephemeral-port search: Linux gives `connect()`
//! the even ports of the range first, and once they are used up every further
//! `connect()` scans them all (≈ 1 ms each here, so connecting 19,000 clients took
//! seconds of the generator's kernel time, not the server's). Spreading connections
//! over several loopback source addresses (127.0.0.1, 127.0.0.2, …) gives each its own
//! port space. `IP_BIND_ADDRESS_NO_PORT` lets the port still be chosen at `connect()`
//! time, per destination.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use tokio::net::{TcpSocket, TcpStream};

/// Connect to `host:port`; from `source` (port chosen by the kernel) when given and of
/// the same address family as the resolved destination, else from the default address.
pub async fn connect(host: &str, port: u16, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for dest in tokio::net::lookup_host((host, port)).await? {
        if dest.is_ipv4() != source.is_ipv4() {
            continue;
        }
        match connect_from(source, dest).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e),
        None => TcpStream::connect((host, port)).await,
    }
}

async fn connect_from(source: IpAddr, dest: SocketAddr) -> io::Result<TcpStream> {
    let sock = if dest.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if source.is_ipv4() {
        bind_address_no_port(&sock)?;
    }
    sock.bind(SocketAddr::new(source, 0))?;
    sock.connect(dest).await
}

fn bind_address_no_port(sock: &TcpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connects_from_the_chosen_loopback_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for source in ["127.0.0.3", "127.0.0.1"] {
            let source: IpAddr = source.parse().unwrap();
            let c = connect("127.0.0.1", port, Some(source)).await.unwrap();
            let (_s, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), source);
            assert_eq!(c.local_addr().unwrap(), peer);
        }
        // No source: the default address.
        let _c = connect("127.0.0.1", port, None).await.unwrap();
        let (_s, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        // A source of the other family is ignored rather than failing.
        let _c = connect("127.0.0.1", port, Some("::1".parse().unwrap()))
            .await
            .unwrap();
        let (_s, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
