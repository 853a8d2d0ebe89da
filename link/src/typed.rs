//! The typed transport: the only way Vidar's processes talk over zenoh.
//!
//! A [`Link`] is a joined site (zenoh session, key space, refusal counter).
//! Everything that arrives is decoded through [`Garbage`] before any caller
//! sees it: subscribers get an `M`, services a `Q`, requesters an `R`; bytes
//! that do not decode are counted and dropped (or answered with an error).
//! Declarations return handles that undeclare when dropped.
//!
//! - [`Link::subscribe`] / [`Link::subscribe_queue`] / [`Link::subscribe_any`]: pub/sub;
//! - [`Link::publisher`], [`Link::put`]: publishing;
//! - [`Link::serve`], [`Link::serve_get`]: queryables;
//! - [`Link::request`] (blocking), [`Link::request_then`] (returns at once),
//!   [`Link::fetch`] (a query without payload): request/reply;
//! - [`Link::alive`], [`Link::watch_alive`], [`Link::alive_now`]: liveliness.

use crate::sign::Trust;
use crate::{Garbage, LinkError, RequestError};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use vidar_protocol::wire::{self, Message, MessageKind};
use vidar_protocol::Keys;
use zenoh::sample::SampleKind;
use zenoh::Wait;

/// A joined site; cheap to clone (every clone is the same session).
#[derive(Clone)]
pub struct Link {
    session: zenoh::Session,
    keys: Keys,
    garbage: Arc<Garbage>,
    trust: Arc<Trust>,
    /// When this process's certificate expires (under a bundle).
    certificate_expires: Option<vidar_protocol::UnixMs>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("site", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

fn declared(what: &str, key: &str) -> impl FnOnce(zenoh::Error) -> LinkError {
    let what = format!("{what} on {key}");
    move |e| LinkError::Declare {
        what,
        reason: e.to_string(),
    }
}

/// A subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription(#[allow(dead_code)] zenoh::pubsub::Subscriber<()>);

/// A liveliness subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct AliveWatch(#[allow(dead_code)] zenoh::pubsub::Subscriber<()>);

/// A service (queryable); dropping it stops serving.
#[derive(Debug)]
pub struct Service(#[allow(dead_code)] zenoh::query::Queryable<()>);

/// A liveliness token; dropping it tells the site this process left.
#[derive(Debug)]
pub struct AliveToken(#[allow(dead_code)] zenoh::liveliness::LivelinessToken);

/// A declared publisher of `M` on one key.
#[derive(Debug)]
pub struct Publisher<M> {
    inner: zenoh::pubsub::Publisher<'static>,
    key: String,
    trust: Arc<Trust>,
    _m: PhantomData<fn(&M)>,
}

/// A message encoded once, to be published or served many times.
#[derive(Debug, Clone)]
pub struct Encoded<M> {
    bytes: Vec<u8>,
    _m: PhantomData<fn(&M)>,
}

impl<M> Default for Encoded<M> {
    /// Nothing encoded yet (empty).
    fn default() -> Self {
        Encoded {
            bytes: Vec::new(),
            _m: PhantomData,
        }
    }
}

impl<M: Message> Encoded<M> {
    /// Encodes `m`.
    pub fn new(m: &M) -> Result<Self, LinkError> {
        let bytes = wire::encode(m).map_err(|e| LinkError::Encode(e.to_string()))?;
        Ok(Encoded {
            bytes,
            _m: PhantomData,
        })
    }

    /// Its size, bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty (never, for a real message).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl<M: Message> Publisher<M> {
    /// Publishes `m`.
    pub fn put(&self, m: &M) -> Result<(), LinkError> {
        self.put_encoded(&Encoded::new(m)?)
    }

    /// Publishes an already encoded `M`.
    pub fn put_encoded(&self, m: &Encoded<M>) -> Result<(), LinkError> {
        self.inner
            .put(self.trust.seal(&self.key, m.bytes.clone()))
            .wait()
            .map_err(|e| LinkError::Send(e.to_string()))
    }
}

/// A payload received on a key that carries more than one message kind:
/// look at its kind, then decode (refusals counted).
#[derive(Debug)]
pub struct Payload<'a> {
    key: &'a str,
    bytes: &'a [u8],
    garbage: &'a Garbage,
}

impl Payload<'_> {
    /// The key it was put under.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The message kind its header announces (None: no valid header; the
    /// payload is counted as refused).
    pub fn kind(&self) -> Option<MessageKind> {
        match wire::peek(self.bytes) {
            Ok((_, k)) => Some(k),
            Err(e) => {
                self.garbage.refuse(self.key, &e);
                None
            }
        }
    }

    /// Decodes it as an `M` (refusals counted).
    pub fn decode<M: Message>(&self) -> Option<M> {
        self.garbage.decode::<M>(self.key, self.bytes)
    }

    /// Counts it as refused, for `why` (well-formed, but not to be believed
    /// from whoever sent it).
    pub fn refuse(&self, why: &dyn std::fmt::Display) {
        self.garbage.refuse(self.key, why);
    }
}

/// Answers one request; may be moved to another thread and answered later.
#[derive(Debug)]
pub struct Responder<R> {
    query: zenoh::query::Query,
    key: String,
    trust: Arc<Trust>,
    _r: PhantomData<fn(&R)>,
}

impl<R: Message> Responder<R> {
    /// The key the request was sent to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sends the answer: a message, or an error text.
    pub fn reply(self, answer: Result<R, String>) {
        let sent = match answer.and_then(|m| wire::encode(&m).map_err(|e| e.to_string())) {
            Ok(bytes) => self
                .query
                .reply(&self.key, self.trust.seal(&self.key, bytes))
                .wait(),
            Err(e) => self.query.reply_err(e).wait(),
        };
        if let Err(e) = sent {
            tracing::debug!(key = %self.key, error = %e, "reply not sent");
        }
    }

    /// Sends an already encoded answer.
    pub fn reply_encoded(self, answer: &Encoded<R>) {
        let bytes = self.trust.seal(&self.key, answer.bytes.clone());
        if let Err(e) = self.query.reply(&self.key, bytes).wait() {
            tracing::debug!(key = %self.key, error = %e, "reply not sent");
        }
    }
}

/// A queue of decoded messages from [`Link::subscribe_queue`].
#[derive(Debug)]
pub struct Queue<M> {
    inner: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    garbage: Arc<Garbage>,
    trust: Arc<Trust>,
    _m: PhantomData<fn() -> M>,
}

/// Why [`Queue::recv_timeout`] returned without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Nothing arrived in time (or what arrived was refused).
    Empty,
    /// The subscription ended.
    Closed,
}

impl<M: Message> Queue<M> {
    /// The next message and its key, waiting up to `d`.
    pub fn recv_timeout(&self, d: Duration) -> Result<(String, M), QueueError> {
        match self.inner.recv_timeout(d) {
            Ok(Some(sample)) => {
                let key = sample.key_expr().as_str().to_string();
                let bytes = sample.payload().to_bytes();
                let decoded = self
                    .trust
                    .body(&self.garbage, &key, &bytes)
                    .and_then(|b| self.garbage.decode::<M>(&key, b));
                match decoded {
                    Some(m) => Ok((key, m)),
                    None => Err(QueueError::Empty),
                }
            }
            Ok(None) => Err(QueueError::Empty),
            Err(_) => Err(QueueError::Closed),
        }
    }
}

impl Link {
    /// Wraps an open session for `keys`' site, with no keys to sign or
    /// pin (plaintext on loopback).
    pub fn new(session: zenoh::Session, keys: Keys) -> Link {
        let trust = Trust {
            signed_keys: keys.signed(),
            ..Trust::default()
        };
        Link::with_trust(session, keys, trust)
    }

    pub(crate) fn with_trust(session: zenoh::Session, keys: Keys, trust: Trust) -> Link {
        Link {
            session,
            keys,
            garbage: Arc::new(Garbage::default()),
            trust: Arc::new(trust),
            certificate_expires: None,
        }
    }

    /// The same link, knowing when its certificate expires.
    /// The zenoh session underneath.
    pub(crate) fn session(&self) -> &zenoh::Session {
        &self.session
    }

    pub(crate) fn with_certificate_expiry(mut self, at: Option<vidar_protocol::UnixMs>) -> Link {
        self.certificate_expires = at;
        self
    }

    /// When this process's certificate expires, under a bundle (exported by
    /// both binaries as `vidar_certificate_expiry_timestamp_seconds`).
    pub fn certificate_expires(&self) -> Option<vidar_protocol::UnixMs> {
        self.certificate_expires
    }

    /// Whether this link checks the master's signature on plans and merges.
    pub fn verifies_signatures(&self) -> bool {
        self.trust.authority.is_some()
    }

    /// Whether this link signs plans and merges.
    pub fn signs(&self) -> bool {
        self.trust.signer.is_some()
    }

    /// The site's key space.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Counts the payloads refused on this link.
    pub fn garbage(&self) -> &Arc<Garbage> {
        &self.garbage
    }

    /// The locators this session listens on (`tls/127.0.0.1:39517`), with
    /// the ports the kernel picked for a `:0` in `listen`.
    pub fn locators(&self) -> Vec<String> {
        self.session
            .info()
            .locators()
            .wait()
            .into_iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// Closes the session (declarations still held stop working).
    pub fn close(&self) {
        if let Err(e) = self.session.close().wait() {
            tracing::debug!(error = %e, "closing the zenoh session");
        }
    }

    /// Calls `on(key, message)` for every `M` published under `key_expr`
    /// (on zenoh's threads: keep it short, hand work to a thread).
    pub fn subscribe<M: Message + 'static>(
        &self,
        key_expr: &str,
        on: impl Fn(&str, M) + Send + Sync + 'static,
    ) -> Result<Subscription, LinkError> {
        self.subscribe_any(key_expr, move |payload| {
            if let Some(m) = payload.decode::<M>() {
                on(payload.key, m);
            }
        })
    }

    /// Like [`Link::subscribe`], for a key that carries more than one kind.
    pub fn subscribe_any(
        &self,
        key_expr: &str,
        on: impl Fn(Payload<'_>) + Send + Sync + 'static,
    ) -> Result<Subscription, LinkError> {
        let g = Arc::clone(&self.garbage);
        let trust = Arc::clone(&self.trust);
        self.session
            .declare_subscriber(key_expr)
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                let key = sample.key_expr().as_str();
                if let Some(body) = trust.body(&g, key, &bytes) {
                    on(Payload {
                        key,
                        bytes: body,
                        garbage: &g,
                    });
                }
            })
            .wait()
            .map(Subscription)
            .map_err(declared("subscriber", key_expr))
    }

    /// A bounded queue of the `M`s published under `key_expr`, for a thread
    /// of its own (when full, zenoh's newest samples wait: the FIFO bounds
    /// memory).
    pub fn subscribe_queue<M: Message>(
        &self,
        key_expr: &str,
        capacity: usize,
    ) -> Result<Queue<M>, LinkError> {
        let inner = self
            .session
            .declare_subscriber(key_expr)
            .with(zenoh::handlers::FifoChannel::new(capacity))
            .wait()
            .map_err(declared("subscriber", key_expr))?;
        Ok(Queue {
            inner,
            garbage: Arc::clone(&self.garbage),
            trust: Arc::clone(&self.trust),
            _m: PhantomData,
        })
    }

    /// A declared publisher of `M` on `key`.
    pub fn publisher<M: Message>(&self, key: &str) -> Result<Publisher<M>, LinkError> {
        self.publisher_at(key, zenoh::qos::Priority::DEFAULT)
    }

    /// A declared publisher of `M` on `key` for the site's control traffic
    /// (a node's status): ahead of data in zenoh's queues, each message
    /// sent at once. A link that jobs, crops or probes fill then delays it
    /// by what the kernel already holds, not by zenoh's whole backlog, and
    /// the master does not take a busy node for a dead one.
    pub fn control_publisher<M: Message>(&self, key: &str) -> Result<Publisher<M>, LinkError> {
        self.publisher_at(key, zenoh::qos::Priority::InteractiveHigh)
    }

    fn publisher_at<M: Message>(
        &self,
        key: &str,
        priority: zenoh::qos::Priority,
    ) -> Result<Publisher<M>, LinkError> {
        let inner = self
            .session
            .declare_publisher(key.to_string())
            .priority(priority)
            .express(priority != zenoh::qos::Priority::DEFAULT)
            .wait()
            .map_err(declared("publisher", key))?;
        Ok(Publisher {
            inner,
            key: key.to_string(),
            trust: Arc::clone(&self.trust),
            _m: PhantomData,
        })
    }

    /// Publishes one `M` on `key`.
    pub fn put<M: Message>(&self, key: &str, m: &M) -> Result<(), LinkError> {
        let bytes = wire::encode(m).map_err(|e| LinkError::Encode(e.to_string()))?;
        self.session
            .put(key, self.trust.seal(key, bytes))
            .wait()
            .map_err(|e| LinkError::Send(e.to_string()))
    }

    /// Serves requests at `key` whose payload decodes as `Q` (others are
    /// counted and answered with an error) with `handle`.
    pub fn serve<Q: Message + 'static, R: Message + 'static>(
        &self,
        key: &str,
        handle: impl Fn(Q, Responder<R>) + Send + Sync + 'static,
    ) -> Result<Service, LinkError> {
        let g = Arc::clone(&self.garbage);
        let trust = Arc::clone(&self.trust);
        let what = Q::KIND.as_str();
        self.session
            .declare_queryable(key)
            .callback(move |query| {
                let key = query.key_expr().as_str().to_string();
                match query
                    .payload()
                    .map(|p| p.to_bytes())
                    .and_then(|b| g.decode::<Q>(&key, &b))
                {
                    Some(req) => handle(
                        req,
                        Responder {
                            query,
                            key,
                            trust: Arc::clone(&trust),
                            _r: PhantomData,
                        },
                    ),
                    None => {
                        let _ = query.reply_err(format!("expected a {what}")).wait();
                    }
                }
            })
            .wait()
            .map(Service)
            .map_err(declared("queryable", key))
    }

    /// Serves requests at `key` that carry no payload (a "get") with `handle`.
    pub fn serve_get<R: Message + 'static>(
        &self,
        key: &str,
        handle: impl Fn(Responder<R>) + Send + Sync + 'static,
    ) -> Result<Service, LinkError> {
        let trust = Arc::clone(&self.trust);
        self.session
            .declare_queryable(key)
            .callback(move |query| {
                let key = query.key_expr().as_str().to_string();
                handle(Responder {
                    query,
                    key,
                    trust: Arc::clone(&trust),
                    _r: PhantomData,
                })
            })
            .wait()
            .map(Service)
            .map_err(declared("queryable", key))
    }

    /// Sends `request` to `key` and waits up to `timeout` for the first reply
    /// that decodes as an `R`.
    pub fn request<Q: Message, R: Message>(
        &self,
        key: &str,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, RequestError> {
        crate::request(
            &self.session,
            key,
            request,
            timeout,
            &self.garbage,
            &self.trust,
        )
    }

    /// Sends `request` to `key` and returns at once; `done` gets the answer
    /// (see [`crate::request_then`]).
    pub fn request_then<Q: Message, R: Message + 'static>(
        &self,
        key: &str,
        request: &Q,
        timeout: Duration,
        done: impl FnOnce(Result<R, RequestError>) + Send + 'static,
    ) -> Result<(), RequestError> {
        crate::request_then(
            &self.session,
            key,
            request,
            timeout,
            Arc::clone(&self.garbage),
            Arc::clone(&self.trust),
            done,
        )
    }

    /// Asks `key` (no payload) and returns every reply that decodes as an
    /// `R` within `timeout`.
    pub fn fetch<R: Message>(&self, key: &str, timeout: Duration) -> Vec<R> {
        let replies = match self.session.get(key).timeout(timeout).wait() {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(key, error = %e, "query not sent");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + timeout + Duration::from_millis(200);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(Some(reply)) = replies.recv_timeout(left) else {
                break;
            };
            if let Ok(sample) = reply.result() {
                let k = sample.key_expr().as_str();
                let bytes = sample.payload().to_bytes();
                if let Some(r) = self
                    .trust
                    .body(&self.garbage, k, &bytes)
                    .and_then(|b| self.garbage.decode::<R>(k, b))
                {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Declares this process alive at `key` until the token is dropped.
    pub fn alive(&self, key: &str) -> Result<AliveToken, LinkError> {
        self.session
            .liveliness()
            .declare_token(key.to_string())
            .wait()
            .map(AliveToken)
            .map_err(declared("liveliness token", key))
    }

    /// Calls `on(key, alive)` when a liveliness token under `key_expr`
    /// appears (`true`, including those already there) or goes (`false`).
    pub fn watch_alive(
        &self,
        key_expr: &str,
        on: impl Fn(&str, bool) + Send + Sync + 'static,
    ) -> Result<AliveWatch, LinkError> {
        self.session
            .liveliness()
            .declare_subscriber(key_expr)
            .history(true)
            .callback(move |sample| {
                on(sample.key_expr().as_str(), sample.kind() == SampleKind::Put)
            })
            .wait()
            .map(AliveWatch)
            .map_err(declared("liveliness subscriber", key_expr))
    }

    /// The keys of the liveliness tokens under `key_expr` now.
    pub fn alive_now(&self, key_expr: &str, timeout: Duration) -> Vec<String> {
        let replies = match self
            .session
            .liveliness()
            .get(key_expr)
            .timeout(timeout)
            .wait()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(key_expr, error = %e, "liveliness query not sent");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        while let Ok(reply) = replies.recv() {
            if let Ok(sample) = reply.result() {
                out.push(sample.key_expr().as_str().to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LinkSettings, Mode};
    use std::sync::mpsc;
    use vidar_protocol::messages::{SyncBatch, SyncRequest};
    use vidar_protocol::NodeId;

    fn open() -> Link {
        LinkSettings {
            site: format!("typed{}", std::process::id()),
            listen: vec!["tcp/127.0.0.1:0".into()],
            ..LinkSettings::default()
        }
        .open(Mode::Peer)
        .expect("session")
    }

    fn req(n: u64) -> SyncRequest {
        SyncRequest {
            after_seq: n,
            max_records: 10,
            ack_through: 0,
        }
    }

    #[test]
    fn messages_arrive_typed_and_garbage_is_counted_not_delivered() {
        let link = open();
        let key = format!("{}/topic", link.keys().prefix());
        let (tx, rx) = mpsc::channel();
        let _sub = link
            .subscribe(&key, move |_k, m: SyncRequest| {
                let _ = tx.send(m);
            })
            .expect("subscribe");
        link.put(&key, &req(7)).expect("put");
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("delivered");
        assert_eq!(got.after_seq, 7);
        // Raw junk and a message of another kind on the same key.
        link.session
            .put(&key, b"junk".to_vec())
            .wait()
            .expect("raw put");
        let other = SyncBatch {
            node: NodeId::new("n").expect("id"),
            records: Vec::new(),
            last_seq: 0,
            more: false,
        };
        link.put(&key, &other).expect("put");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while link.garbage().refused() < 2 {
            assert!(std::time::Instant::now() < deadline, "refusals not counted");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.try_recv().is_err(), "nothing undecodable was delivered");
        link.close();
    }

    #[test]
    fn services_answer_typed_requests_blocking_or_not_and_refuse_others() {
        let link = open();
        let key = format!("{}/svc", link.keys().prefix());
        let _svc = link
            .serve(&key, |q: SyncRequest, answer: Responder<SyncBatch>| {
                answer.reply(Ok(SyncBatch {
                    node: NodeId::new("server").expect("id"),
                    records: Vec::new(),
                    last_seq: q.after_seq + 1,
                    more: false,
                }))
            })
            .expect("serve");
        let b: SyncBatch = link
            .request(&key, &req(41), Duration::from_secs(2))
            .expect("answer");
        assert_eq!(b.last_seq, 42);
        // Returns at once; the answer comes to the callback exactly once.
        let (tx, rx) = mpsc::channel();
        link.request_then::<SyncRequest, SyncBatch>(
            &key,
            &req(9),
            Duration::from_secs(2),
            move |r| {
                let _ = tx.send(r.map(|b| b.last_seq));
            },
        )
        .expect("sent");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5))
                .expect("answered")
                .ok(),
            Some(10)
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "answered once"
        );
        // Nobody serves this key: the callback hears of the timeout.
        let (tx, rx) = mpsc::channel();
        let nobody = format!("{}/nobody", link.keys().prefix());
        link.request_then::<SyncRequest, SyncBatch>(
            &nobody,
            &req(1),
            Duration::from_millis(200),
            move |r| {
                let _ = tx.send(r.is_err());
            },
        )
        .expect("sent");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).ok(), Some(true));
        // A request of the wrong kind is refused with a reason.
        let wrong = link.request::<SyncBatch, SyncBatch>(
            &key,
            &SyncBatch {
                node: NodeId::new("x").expect("id"),
                records: Vec::new(),
                last_seq: 0,
                more: false,
            },
            Duration::from_secs(2),
        );
        assert!(matches!(wrong, Err(RequestError::Refused(_))), "{wrong:?}");
        link.close();
    }

    #[test]
    fn liveliness_tokens_are_seen_coming_and_going() {
        let link = open();
        let key = format!("{}/alive/n1", link.keys().prefix());
        let (tx, rx) = mpsc::channel();
        let _watch = link
            .watch_alive(
                &format!("{}/alive/*", link.keys().prefix()),
                move |k, up| {
                    let _ = tx.send((k.to_string(), up));
                },
            )
            .expect("watch");
        let token = link.alive(&key).expect("token");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).ok(),
            Some((key.clone(), true))
        );
        assert_eq!(
            link.alive_now(
                &format!("{}/alive/*", link.keys().prefix()),
                Duration::from_secs(1)
            ),
            vec![key.clone()]
        );
        drop(token);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).ok(),
            Some((key, false))
        );
        link.close();
    }
}
