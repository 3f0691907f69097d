//! A TCP proxy that can cut every connection passing through it, so tests can make "the
//! server drop the socket" while the server itself keeps running.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Forwards connections to a target until told to cut them; new connections work after a cut.
pub struct DroppingProxy {
    /// Where clients connect.
    pub address: SocketAddr,
    cut: broadcast::Sender<()>,
    task: JoinHandle<()>,
}

impl DroppingProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let (cut, _) = broadcast::channel::<()>(4);
        let cuts = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut_here = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_here.recv() => {}
                    }
                    // Both sockets drop here: the client sees the connection end without a
                    // websocket close frame, as when a server or load balancer goes away.
                });
            }
        });
        Self { address, cut, task }
    }

    /// Closes every connection open now.
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
