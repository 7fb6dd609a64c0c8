//! A TCP proxy on 127.0.0.1 that can go away and come back: while it is down every
//! connection through it is cut and new ones are refused, as when the server behind it
//! restarts, but the server keeps its data. The Kafka tests put it in front of tansu (whose
//! only store in these builds is memory, so a real restart would empty it).

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use crate::free_port;

/// Forwards every connection on `port` to the upstream port. Clones are handles to the
/// same proxy.
#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    up: AtomicBool,
    /// Both ends of every open connection, to cut them.
    open: Mutex<Vec<TcpStream>>,
    /// Bumped at every start, so an accept loop of an earlier one ends.
    generation: Mutex<u64>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`, on a free port, up.
    pub fn start(upstream: u16) -> Proxy {
        let p = Proxy {
            port: free_port(),
            upstream,
            state: Arc::new(State::default()),
        };
        p.up();
        p
    }

    /// Listens (again) and forwards.
    pub fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.state.up.store(true, Ordering::SeqCst);
        let generation = {
            let mut g = self.state.generation.lock().unwrap();
            *g += 1;
            *g
        };
        let (state, upstream) = (self.state.clone(), self.upstream);
        thread::spawn(move || {
            loop {
                if !state.up.load(Ordering::SeqCst)
                    || *state.generation.lock().unwrap() != generation
                {
                    return;
                }
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        {
                            let mut open = state.open.lock().unwrap();
                            open.push(client.try_clone().unwrap());
                            open.push(server.try_clone().unwrap());
                        }
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }

    /// Cuts every connection and stops listening (connects are refused).
    pub fn down(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        // The accept loop sees it within a few milliseconds and drops the listener.
        thread::sleep(Duration::from_millis(50));
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Down for `down_for`, then up again: a restart of the server, seen from its clients.
    pub fn outage(&self, down_for: Duration) {
        self.down();
        thread::sleep(down_for);
        self.up();
    }
}

/// Copies `from` into `to` on a thread of its own until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
