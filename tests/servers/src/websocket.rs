//! A WebSocket server for the websocket connectors' tests and benchmark, in the test's own
//! process (tokio-tungstenite): it records what it is sent and the handshake's headers,
//! sends a numbered feed ("m0", "m1", ...) to each client once it got the subscription
//! messages it waits for, and can close every connection (gracefully at a given message,
//! or abruptly), stop listening and listen again on the same port.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_tungstenite::tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
};

/// How the server behaves; fields are read on every connection, so a test may change
/// them while it runs.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// A header (name, value) the handshake must carry, else 401.
    pub require: Option<(String, String)>,
    /// Text messages a client must send on a connection before the feed starts there.
    pub subscriptions: usize,
    /// Feed messages up to (not including) this number; 0 sends no feed.
    pub feed_until: AtomicUsize,
    /// Send the feed as binary messages.
    pub binary: bool,
    /// Pad feed numbers with zeros to this many digits ("m000042"), for sized messages.
    pub width: usize,
    /// Close every connection gracefully (a Close frame) once this message number is sent.
    pub close_at: AtomicUsize,
    /// Accept, then neither read nor write: a peer that has died without closing.
    pub silent: AtomicBool,
    /// Pause this long after every 100 feed messages (0: as fast as the socket takes them).
    pub pace_micros: AtomicUsize,
    /// Pause this long after reading every 100 data messages (a slow reader).
    pub read_pace_micros: AtomicUsize,
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Data messages received (text or binary), in order, over every connection.
    pub received: Mutex<Vec<Vec<u8>>>,
    /// Headers of each handshake (lower-case names).
    pub handshakes: Mutex<Vec<Vec<(String, String)>>>,
    /// Connections accepted (handshake done).
    pub connections: AtomicUsize,
    /// The next feed message to send (shared by every connection, so a reconnecting client
    /// gets the rest of the feed).
    pub next: AtomicUsize,
}

#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    pub seen: Arc<Seen>,
    accept: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Peer {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start(behaviour: Behaviour) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = Peer {
            addr,
            behaviour: Arc::new(behaviour),
            seen: Arc::default(),
            accept: Mutex::new(None),
            conns: Arc::default(),
        };
        peer.serve(listener);
        peer
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let (b, s, conns) = (
            self.behaviour.clone(),
            self.seen.clone(),
            self.conns.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let c = tokio::spawn(connection(tcp, b.clone(), s.clone()));
                conns.lock().unwrap().push(c);
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Stops listening and drops every connection at once (no Close frame): a crash.
    pub fn crash(&self) {
        if let Some(t) = self.accept.lock().unwrap().take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn reopen(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// The data messages received, as text.
    pub fn received(&self) -> Vec<String> {
        self.seen
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    pub fn received_count(&self) -> usize {
        self.seen.received.lock().unwrap().len()
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn connection(tcp: tokio::net::TcpStream, b: Arc<Behaviour>, s: Arc<Seen>) {
    // The callback's type is tungstenite's own.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let allowed = match &b.require {
            None => true,
            Some((name, value)) => headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && v == value),
        };
        s.handshakes.lock().unwrap().push(headers);
        if allowed {
            Ok(resp)
        } else {
            let mut refused = ErrorResponse::new(Some("no".into()));
            *refused.status_mut() = StatusCode::UNAUTHORIZED;
            Err(refused)
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
        return;
    };
    s.connections.fetch_add(1, Ordering::SeqCst);
    if b.silent.load(Ordering::SeqCst) {
        // Hold the connection without reading (no pong) until the test drops it.
        let _held = ws;
        std::future::pending::<()>().await;
        return;
    }
    let (mut tx, mut rx) = ws.split();
    let subscribed = Arc::new(AtomicUsize::new(0));
    let (sub, seen, slow) = (subscribed.clone(), s.clone(), b.clone());
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Text(_) | Message::Binary(_)) {
                n += 1;
                let pace = slow.read_pace_micros.load(Ordering::SeqCst);
                if pace > 0 && n.is_multiple_of(100) {
                    tokio::time::sleep(Duration::from_micros(pace as u64)).await;
                }
            }
            match m {
                Message::Text(t) => {
                    sub.fetch_add(1, Ordering::SeqCst);
                    seen.received.lock().unwrap().push(t.as_bytes().to_vec());
                }
                Message::Binary(d) => seen.received.lock().unwrap().push(d.to_vec()),
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let reader = AbortOnDrop(reader);
    loop {
        if b.feed_until.load(Ordering::SeqCst) == 0
            || subscribed.load(Ordering::SeqCst) < b.subscriptions
        {
            if reader.0.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let i = s.next.load(Ordering::SeqCst);
        if i == b.close_at.load(Ordering::SeqCst) && i > 0 {
            let _ = tx.close().await;
            return;
        }
        if i >= b.feed_until.load(Ordering::SeqCst) {
            if tx.flush().await.is_err() || reader.0.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let text = format!("m{i:0width$}", width = b.width);
        let m = if b.binary {
            Message::binary(text.into_bytes())
        } else {
            Message::text(text)
        };
        // Written in runs of 100, flushed after each run.
        if tx.feed(m).await.is_err() {
            return;
        }
        s.next.fetch_add(1, Ordering::SeqCst);
        if i % 100 == 99 {
            if tx.flush().await.is_err() {
                return;
            }
            let pace = b.pace_micros.load(Ordering::SeqCst);
            if pace > 0 {
                tokio::time::sleep(Duration::from_micros(pace as u64)).await;
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
