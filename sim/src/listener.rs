//! The API port: accepting connections, and really stopping and restarting on `refuse`.
//!
//! Connections are served by hyper directly (not `axum::serve`) so this task owns each
//! connection and can close them all when the `refuse` fault starts: a client with a
//! keep-alive connection must see the backend vanish, not keep talking to it. The port is
//! bound with SO_REUSEADDR so it can be bound again at once when the fault is cleared.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::fault::FaultMode;
use super::{ListenState, ListenStatus, Shared};

/// Binds `addr` with SO_REUSEADDR.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds again after a `refuse`, retrying briefly in case the old socket lingers.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..20 {
        match bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn close_all(conns: &mut JoinSet<()>) {
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // A closed channel means the handle is gone: stop too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves the API on `listener` until `shutdown` turns true, following the `refuse` fault.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = shared.api_addr;
    let mut faults = shared.faults.subscribe();
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        let current = *faults.borrow_and_update();
        let want_up = current.faults.mode != FaultMode::Refuse;
        let state = match (want_up, listener.is_some()) {
            (true, true) => ListenState::Up,
            (false, false) => ListenState::Down,
            (false, true) => {
                listener = None;
                close_all(&mut conns).await;
                log::info!("API port {addr} closed (refuse)");
                ListenState::Down
            }
            (true, false) => match rebind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    log::info!("API port {addr} listening again");
                    ListenState::Up
                }
                Err(e) => {
                    log::error!("cannot listen again on {addr}: {e}");
                    ListenState::BindFailed(e.to_string())
                }
            },
        };
        shared.listen.send_replace(ListenStatus {
            version: current.version,
            state,
        });
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            changed = faults.changed() => if changed.is_err() { break },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    let service = TowerToHyperService::new(router.clone());
                    conns.spawn(async move {
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
                            log::debug!("connection from {peer} ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    log::warn!("accept on {addr} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    close_all(&mut conns).await;
    // Any later fault change answers "stopped" at once instead of waiting for this task.
    shared.listen.send_replace(ListenStatus {
        version: u64::MAX,
        state: ListenState::Stopped,
    });
}
