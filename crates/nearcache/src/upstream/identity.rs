//! Per-user shared connections: for each ACL identity (user and password) clients
//! authenticated as, a shared connection per protocol version, authenticated as that user and
//! tracked with `REDIRECT` to the invalidation connection like the pool's own, opened on demand
//! and closed once no client has used the identity for [`IDLE_CLOSE`].
//!
//! Owns the map of identities and their connections, and each user's cache partition number.
//! Never verifies a password (a client's `AUTH` is checked upstream before it gets here) and
//! never shows one: [`Identity`]'s `Debug` leaves it out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::conn::spawn::spawn_shared;
use super::conn::ConnHandle;
use super::env::Env;
use super::health::Health;
use super::permits::Permits;
use super::shared::{proto_index, SharedConns};

/// An identity unused by any client this long has its connections closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);

/// Most distinct user names given a cache partition of their own. A user past it is served
/// uncached (`Identity::partition` is `None`): a few bytes per name, and a cap so that no
/// number of users grows the proxy's memory without bound.
pub const MAX_PARTITIONS: usize = 10_000;

/// Who a client acts as upstream: an ACL user and the password it authenticated with.
pub struct Identity {
    pub user: String,
    password: Option<String>,
    /// The user's cache partition: 0 is the pool's own user; `None`: not cached.
    pub partition: Option<u32>,
    /// The user was deleted (`ACL DELUSER`): Redis closed its clients, and so does the proxy.
    revoked: AtomicBool,
    /// Its connections; `None` for the pool's own user, served by the pool's connections.
    conns: Option<[OnceLock<ConnHandle>; 2]>,
    env: Option<Arc<Env>>,
    /// When a client last took a connection of this identity (ms since the registry began).
    last_used: AtomicU64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Whether Redis deleted the user since.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// The password it authenticated with.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Whether this is the pool's own user (the pool's connections serve it).
    pub fn is_pool_user(&self) -> bool {
        self.conns.is_none()
    }

    /// Logs `conn`, a dedicated connection the pool opened as its own user, in as this
    /// identity (marking it foreign, so that the pool does not reuse it): `Err` with Redis's
    /// refusal, or an error reply when the connection is lost.
    pub async fn log_in(&self, conn: &ConnHandle) -> Result<(), bytes::Bytes> {
        conn.mark_foreign();
        let words = [
            bytes::Bytes::from_static(b"AUTH"),
            bytes::Bytes::from(self.user.clone()),
            bytes::Bytes::from(self.password().unwrap_or("nopass").to_string()),
        ];
        let mut out = bytes::BytesMut::new();
        resp::encode_command(&words, &mut out);
        match conn.call(out.freeze()).await {
            Ok(Ok(r)) if r.first() == Some(&b'+') => Ok(()),
            Ok(Ok(r)) => Err(r),
            Ok(Err(e)) => Err(e.to_frame()),
            Err(_) => Err(crate::reply::error(
                "ERR nearcache: upstream connection lost",
            )),
        }
    }
}

/// A user name and the password Redis accepted for it (`None`: a `nopass` user).
type UserPassword = (String, Option<String>);

/// Every identity in use, and the partition number of each user name seen.
pub struct Identities {
    env: Arc<Env>,
    permits: Arc<Permits>,
    shared: Arc<SharedConns>,
    own: Arc<Identity>,
    map: Mutex<HashMap<UserPassword, Arc<Identity>>>,
    partitions: Mutex<HashMap<String, u32>>,
    began: Instant,
}

impl Identities {
    pub(super) fn new(env: Arc<Env>, permits: Arc<Permits>, shared: Arc<SharedConns>) -> Self {
        let user = env.settings.username.as_deref().unwrap_or("default");
        let own = Arc::new(Identity {
            user: user.to_string(),
            password: env.settings.password.clone(),
            partition: Some(0),
            revoked: AtomicBool::new(false),
            conns: None,
            env: None,
            last_used: AtomicU64::new(0),
        });
        let partitions = HashMap::from([(user.to_string(), 0)]);
        Identities {
            env,
            permits,
            shared,
            own,
            map: Mutex::new(HashMap::new()),
            partitions: Mutex::new(partitions),
            began: Instant::now(),
        }
    }

    /// The pool's own identity.
    pub fn own(&self) -> Arc<Identity> {
        self.own.clone()
    }

    /// The identity of `user` with `password`, which Redis has just accepted: the pool's own
    /// when it is the pool's user, else one with connections of its own (opened when first
    /// used). A user with no password (`nopass`) is any password's.
    pub fn get(&self, user: &str, password: Option<&str>) -> Arc<Identity> {
        if user == self.own.user {
            return self.own.clone();
        }
        let key = (user.to_string(), password.map(str::to_string));
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = map.get(&key).filter(|id| !id.is_revoked()) {
            return id.clone();
        }
        let mut settings = self.env.settings.clone();
        settings.username = Some(user.to_string());
        settings.password = password.map(str::to_string);
        let env = Arc::new(Env {
            settings,
            counters: self.env.counters.clone(),
            health: Health::default(),
            tracking: self.env.tracking.clone(),
        });
        let id = Arc::new(Identity {
            user: user.to_string(),
            password: password.map(str::to_string),
            partition: self.partition(user),
            revoked: AtomicBool::new(false),
            conns: Some([OnceLock::new(), OnceLock::new()]),
            env: Some(env),
            last_used: AtomicU64::new(self.now_ms()),
        });
        map.insert(key, id.clone());
        id
    }

    fn partition(&self, user: &str) -> Option<u32> {
        let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&n) = parts.get(user) {
            return Some(n);
        }
        if parts.len() >= MAX_PARTITIONS {
            return None;
        }
        let n = parts.len() as u32;
        parts.insert(user.to_string(), n);
        Some(n)
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// The shared connection of `id` for `proto`; `None` for the pool's own user.
    pub fn shared(&self, id: &Identity, proto: u8) -> Option<ConnHandle> {
        let (conns, env) = (id.conns.as_ref()?, id.env.as_ref()?);
        id.last_used.store(self.now_ms(), Ordering::Relaxed);
        let conn = conns[proto_index(proto)].get_or_init(|| {
            let conn = spawn_shared(env.clone(), proto, self.permits.force());
            // Re-pointed with the pool's own when the invalidation connection changes.
            self.shared.add_extra(conn.clone());
            conn
        });
        Some(conn.clone())
    }

    /// Marks every identity of a user no longer in `users` as revoked and forgets it.
    pub fn retain_users(&self, users: &[String]) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(user, _), id| {
            let keep = users.iter().any(|u| u == user);
            if !keep {
                id.revoked.store(true, Ordering::Release);
                self.drop_conns(id);
            }
            keep
        });
    }

    /// Closes the connections of identities no client holds and none used for [`IDLE_CLOSE`].
    pub fn reap(&self) {
        let now = self.now_ms();
        let idle = IDLE_CLOSE.as_millis() as u64;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, id| {
            let unused = Arc::strong_count(id) == 1
                && now.saturating_sub(id.last_used.load(Ordering::Relaxed)) >= idle;
            if unused {
                self.drop_conns(id);
            }
            !unused
        });
    }

    fn drop_conns(&self, id: &Identity) {
        for conn in id.conns.iter().flatten().filter_map(OnceLock::get) {
            self.shared.remove_extra(conn);
        }
    }

    /// Identities with connections of their own now (for tests and figures).
    pub fn count(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
