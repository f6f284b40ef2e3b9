//! Starting and stopping the front door: bind, the tonic server on its own thread, health, shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use tonic::service::interceptor::InterceptedService;

use crate::auth::BearerCheck;
use crate::call::Wakes;
use crate::error::FrontError;
use crate::events::{Event, EventQueue};
use crate::service::{MethodKind, ServiceState, TiergateService};

/// A PEM certificate chain and its key.
pub struct Tls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

pub struct FrontConfig {
    /// `HOST:PORT` (port 0: any free port) or `unix:PATH`.
    pub address: String,
    pub tls: Option<Tls>,
    /// The `/package.Service/Method` paths Python handles.
    pub methods: Vec<(String, MethodKind)>,
    /// An encoded `FileDescriptorSet` with the served protos, for the reflection service.
    pub descriptor_set: Vec<u8>,
    /// The largest request message accepted (RESOURCE_EXHAUSTED beyond it).
    pub max_message_bytes: usize,
    /// Messages a streaming call may have queued before `send` reports `Full`.
    pub stream_capacity: usize,
    /// When set, every service but health needs `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub struct Front {
    queue: Arc<EventQueue>,
    wake: UnixStream,
    wakes: Arc<Wakes>,
    port: Option<u16>,
    handle: Handle,
    health: HealthReporter,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    force: Arc<Notify>,
    finished: Mutex<mpsc::Receiver<()>>,
    thread: Mutex<Option<JoinHandle<Result<(), FrontError>>>>,
}

impl Front {
    /// Binds `config.address` and starts serving on a thread of its own.
    pub fn start(config: FrontConfig) -> Result<Self, FrontError> {
        let wakes = Wakes::new();
        let (parking, unparked) = (Arc::clone(&wakes), Arc::clone(&wakes));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("tiergate-grpc")
            .on_thread_park(move || parking.before_park())
            .on_thread_unpark(move || unparked.after_unpark())
            .build()
            .map_err(FrontError::Runtime)?;
        let listener = runtime.block_on(bind(&config.address))?;
        let port = match &listener {
            Listener::Tcp(tcp) => Some(
                tcp.local_addr()
                    .map_err(|source| FrontError::Listen {
                        address: config.address.clone(),
                        source,
                    })?
                    .port(),
            ),
            Listener::Unix(_) => None,
        };
        let (queue, wake) = EventQueue::new().map_err(FrontError::Runtime)?;
        let (health, health_service) = tonic_health::server::health_reporter();
        // The reflection service keeps borrowed descriptors for its whole life: one small leak per start.
        let descriptors: &'static [u8] = Box::leak(config.descriptor_set.into_boxed_slice());
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(descriptors)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|err| FrontError::Reflection(err.to_string()))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|err| FrontError::Reflection(err.to_string()))?;
        let service = TiergateService::new(ServiceState {
            methods: config.methods.into_iter().collect::<HashMap<_, _>>(),
            queue: Arc::clone(&queue),
            next_id: AtomicU64::new(1),
            max_message_bytes: config.max_message_bytes,
            stream_capacity: config.stream_capacity,
            wakes: Arc::clone(&wakes),
        });
        let mut builder =
            Server::builder().max_concurrent_streams(config.max_streams_per_connection);
        if let Some(tls) = config.tls {
            let identity = Identity::from_pem(tls.cert_pem, tls.key_pem);
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .map_err(FrontError::Tls)?;
        }
        let router = builder.add_service(health_service);
        let router = match config.token.as_deref().map(BearerCheck::new) {
            None => router
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(service),
            Some(check) => router
                .add_service(InterceptedService::new(reflection_v1, check.clone()))
                .add_service(InterceptedService::new(reflection_v1alpha, check.clone()))
                .add_service(InterceptedService::new(service, check)),
        };

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let force = Arc::new(Notify::new());
        let forced = Arc::clone(&force);
        let (finished_tx, finished_rx) = mpsc::channel();
        let handle = runtime.handle().clone();
        handle.spawn(Arc::clone(&wakes).pump());
        let thread = std::thread::Builder::new()
            .name("tiergate-grpc".to_owned())
            .spawn(move || {
                let signal = async {
                    // A dropped sender (the Front went away) stops the server too.
                    drop(shutdown_rx.await);
                };
                let result = runtime.block_on(async move {
                    let serve = async move {
                        match listener {
                            Listener::Tcp(tcp) => {
                                let incoming = TcpIncoming::from(tcp).with_nodelay(Some(true));
                                router.serve_with_incoming_shutdown(incoming, signal).await
                            }
                            Listener::Unix(unix) => {
                                router
                                    .serve_with_incoming_shutdown(
                                        UnixListenerStream::new(unix),
                                        signal,
                                    )
                                    .await
                            }
                        }
                    };
                    tokio::select! {
                        served = serve => served.map_err(FrontError::Serve),
                        () = forced.notified() => Ok(()),
                    }
                });
                // Dropping the runtime here closes every connection still open.
                drop(runtime);
                // An error means nobody waits any more (stop gave up): nothing to tell.
                finished_tx.send(()).ok();
                result
            })
            .map_err(FrontError::Runtime)?;
        Ok(Self {
            queue,
            wake,
            wakes,
            port,
            handle,
            health,
            shutdown: Mutex::new(Some(shutdown_tx)),
            force,
            finished: Mutex::new(finished_rx),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The TCP port bound (None for a unix socket).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The socket that becomes readable when events are queued (read it empty, then `take_events`).
    pub fn wake_socket(&self) -> &UnixStream {
        &self.wake
    }

    pub fn take_events(&self) -> Vec<Event> {
        self.queue.take()
    }

    /// Sends on what streaming calls queued (and their ends) since the last flush: call once per batch.
    pub fn flush(&self) {
        self.wakes.flush();
    }

    /// Sets the health service's status for `service` ("" is the server as a whole).
    pub fn set_health(&self, service: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        // Only an async lock inside: no I/O, so blocking this thread on it is fine.
        self.handle
            .block_on(self.health.set_service_status(service, status));
    }

    /// Stops accepting, lets calls already answered flush for up to `grace`, then closes every connection.
    pub fn stop(&self, grace: Duration) -> Result<(), FrontError> {
        if let Some(shutdown) = self.shutdown.lock().take() {
            // An error means the server already ended: nothing to signal.
            shutdown.send(()).ok();
        }
        if self.finished.lock().recv_timeout(grace).is_err() {
            self.force.notify_one();
        }
        match self.thread.lock().take() {
            Some(thread) => thread.join().map_err(|_| FrontError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // Stop() was not called: stop at once; there is nobody to report an error to.
        drop(self.stop(Duration::ZERO));
    }
}

async fn bind(address: &str) -> Result<Listener, FrontError> {
    let failed = |source| FrontError::Listen {
        address: address.to_owned(),
        source,
    };
    if let Some(path) = address.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(FrontError::Address(address.to_owned()));
        }
        remove_stale_socket(Path::new(path)).map_err(failed)?;
        return UnixListener::bind(path).map(Listener::Unix).map_err(failed);
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| FrontError::Address(address.to_owned()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| FrontError::Address(address.to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(failed)?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(Listener::Tcp(listener)),
            Err(err) => last = Some(err),
        }
    }
    Err(failed(last.unwrap_or_else(|| {
        std::io::Error::other("the host resolved to no address")
    })))
}

/// A socket file left by a process that is gone would make bind fail; anything else at the path stays.
fn remove_stale_socket(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_err() {
                std::fs::remove_file(path)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
