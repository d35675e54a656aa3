//! Abuse limits at the API's edge: request rates per client IP and per account, and
//! the slow-down of sign-ins after repeated failures. State is in process memory: each
//! API replica counts its own clients (an ingress in front limits the sum).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The client's address as the edge determined it (the socket peer, or the
/// forwarded address when a trusted proxy is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The edge sets it when it reads X-Forwarded-For; otherwise it is the peer.
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or_else(|| ClientIp(peer_ip(&parts.extensions))))
    }
}

/// The connection's peer (`ConnectInfo`, which the server puts on every request);
/// 0.0.0.0 for a request that came from no socket (tests).
pub fn peer_ip(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// At most `count` requests per `per`, as a burst or spread out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const fn per_minute(count: u32) -> Self {
        Rate {
            count,
            per: Duration::from_secs(60),
        }
    }
}

/// The actions that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Signup,
    Login,
    UploadCreate,
    PlaybackIssue,
}

impl Action {
    const ALL: [Action; 4] = [
        Action::Signup,
        Action::Login,
        Action::UploadCreate,
        Action::PlaybackIssue,
    ];

    fn name(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::Login => "login",
            Action::UploadCreate => "upload",
            Action::PlaybackIssue => "playback",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::Signup => "sign-ups",
            Action::Login => "sign-in attempts",
            Action::UploadCreate => "new uploads",
            Action::PlaybackIssue => "playback requests",
        }
    }
}

/// The limit on one action: per client IP and per account (or per email for sign-in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionLimits {
    pub per_ip: Option<Rate>,
    pub per_account: Option<Rate>,
}

/// Every limit; parsed from `LECTERN_RATE_LIMITS`.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    limits: HashMap<Action, ActionLimits>,
    /// Failed sign-ins for one email from one IP before each further one waits.
    pub login_failures_free: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let rule = |ip, account: Option<u32>| ActionLimits {
            per_ip: Some(Rate::per_minute(ip)),
            per_account: account.map(Rate::per_minute),
        };
        LimitsConfig {
            limits: HashMap::from([
                (Action::Signup, rule(30, None)),
                (Action::Login, rule(60, Some(20))),
                (Action::UploadCreate, rule(120, Some(60))),
                (Action::PlaybackIssue, rule(600, Some(300))),
            ]),
            login_failures_free: 5,
        }
    }
}

impl LimitsConfig {
    /// No limits at all (benchmarks, closed networks).
    pub fn off() -> Self {
        LimitsConfig {
            limits: Action::ALL
                .iter()
                .map(|a| {
                    (
                        *a,
                        ActionLimits {
                            per_ip: None,
                            per_account: None,
                        },
                    )
                })
                .collect(),
            login_failures_free: u32::MAX,
        }
    }

    /// `off`, or comma-separated overrides of the defaults:
    /// `signup.ip=30/60,login.ip=60/60,login.account=20/60,login.failures=5,upload.ip=…,
    /// upload.account=…,playback.ip=…,playback.account=…` (COUNT/SECONDS; `0` disables one).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("off") {
            return Ok(Self::off());
        }
        let mut config = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected KEY=VALUE"))?;
            if key == "login.failures" {
                config.login_failures_free = value
                    .parse()
                    .map_err(|_| format!("`{item}`: expected a count"))?;
                continue;
            }
            let (action, scope) = key
                .split_once('.')
                .ok_or_else(|| format!("`{key}`: expected ACTION.ip or ACTION.account"))?;
            let action = Action::ALL
                .into_iter()
                .find(|a| a.name() == action)
                .ok_or_else(|| format!("`{action}`: not one of signup, login, upload, playback"))?;
            let rate = if value == "0" {
                None
            } else {
                let (count, secs) = value
                    .split_once('/')
                    .ok_or_else(|| format!("`{item}`: expected COUNT/SECONDS"))?;
                let count: u32 = count.parse().map_err(|_| format!("`{item}`: bad count"))?;
                let secs: u64 = secs.parse().map_err(|_| format!("`{item}`: bad seconds"))?;
                if count == 0 || secs == 0 {
                    return Err(format!("`{item}`: count and seconds must be positive"));
                }
                Some(Rate {
                    count,
                    per: Duration::from_secs(secs),
                })
            };
            let entry = config
                .limits
                .get_mut(&action)
                .expect("every action has limits");
            match scope {
                "ip" => entry.per_ip = rate,
                "account" => entry.per_account = rate,
                other => return Err(format!("`{other}`: expected ip or account")),
            }
        }
        Ok(config)
    }
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub retry_after: Duration,
}

impl Refusal {
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Keyed rate limiting (GCRA: one timestamp per key) and the sign-in failure counter.
pub struct Limits {
    config: LimitsConfig,
    /// Per key: the theoretical arrival time of the next request.
    buckets: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Above this many keys the tables drop entries that no longer restrict anyone.
const PRUNE_ABOVE: usize = 50_000;
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(3600);
const MAX_LOGIN_WAIT: Duration = Duration::from_secs(900);

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        Limits {
            config,
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one `action` by `ip` (and `account`, when known); refuses it when either
    /// is over its rate.
    pub fn check(
        &self,
        action: Action,
        ip: ClientIp,
        account: Option<&str>,
    ) -> Result<(), Refusal> {
        let limits = self.config.limits[&action];
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limits lock");
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, tat| *tat > now);
        }
        let mut keys = Vec::with_capacity(2);
        if let Some(rate) = limits.per_ip {
            keys.push((format!("{}/ip/{}", action.name(), ip.0), rate));
        }
        if let (Some(rate), Some(account)) = (limits.per_account, account) {
            keys.push((format!("{}/account/{}", action.name(), account), rate));
        }
        // Check every key before counting any, so a refused request costs nothing.
        let mut next = Vec::with_capacity(keys.len());
        for (key, rate) in &keys {
            let interval = rate.per / rate.count;
            let tat = buckets.get(key).copied().unwrap_or(now).max(now);
            let allowed_until = now + rate.per;
            let new_tat = tat + interval;
            if new_tat > allowed_until {
                return Err(Refusal {
                    message: format!(
                        "too many {}: at most {} per {} s; try again later",
                        action.describe(),
                        rate.count,
                        rate.per.as_secs()
                    ),
                    retry_after: new_tat - allowed_until,
                });
            }
            next.push(new_tat);
        }
        for ((key, _), tat) in keys.into_iter().zip(next) {
            buckets.insert(key, tat);
        }
        Ok(())
    }

    fn failure_keys(email: &str, ip: ClientIp) -> [String; 2] {
        [format!("{email}/{}", ip.0), format!("{email}/*")]
    }

    /// Whether a sign-in for `email` from `ip` must wait: after the free failures each
    /// further one doubles the wait (1 s, 2 s, 4 s … 15 min), per IP; failures from
    /// every IP together get four times the free ones, so a spread-out guesser slows
    /// down too without one attacker locking the owner out at once.
    pub fn login_wait(&self, email: &str, ip: ClientIp) -> Result<(), Refusal> {
        let now = Instant::now();
        let failures = self.failures.lock().expect("limits lock");
        let free = self.config.login_failures_free;
        for (key, free) in Self::failure_keys(email, ip)
            .iter()
            .zip([free, free.saturating_mul(4)])
        {
            let Some(f) = failures.get(key) else { continue };
            if f.count < free || now.duration_since(f.last) > FAILURE_MEMORY {
                continue;
            }
            let wait = Duration::from_secs(1u64 << (f.count - free).min(10)).min(MAX_LOGIN_WAIT);
            let ready = f.last + wait;
            if ready > now {
                return Err(Refusal {
                    message: format!(
                        "too many failed sign-ins for this account; try again in {} s",
                        (ready - now).as_secs().max(1)
                    ),
                    retry_after: ready - now,
                });
            }
        }
        Ok(())
    }

    pub fn login_failed(&self, email: &str, ip: ClientIp) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limits lock");
        if failures.len() > PRUNE_ABOVE {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
        }
        for key in Self::failure_keys(email, ip) {
            let f = failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) > FAILURE_MEMORY {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    pub fn login_succeeded(&self, email: &str, ip: ClientIp) {
        let mut failures = self.failures.lock().expect("limits lock");
        for key in Self::failure_keys(email, ip) {
            failures.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_address_is_the_edges_or_else_the_peers() {
        use axum::extract::ConnectInfo;
        let peer: std::net::SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let ip_of = |extensions: &[&dyn Fn(&mut axum::http::Extensions)]| {
            let mut req = axum::http::Request::new(());
            extensions.iter().for_each(|add| add(req.extensions_mut()));
            async move {
                ClientIp::from_request_parts(&mut req.into_parts().0, &())
                    .await
                    .unwrap()
                    .0
                    .to_string()
            }
        };
        let from_peer = |e: &mut axum::http::Extensions| {
            e.insert(ConnectInfo(peer));
        };
        let forwarded = |e: &mut axum::http::Extensions| {
            e.insert(ClientIp(IpAddr::from([198, 51, 100, 1])));
        };
        assert_eq!(ip_of(&[&from_peer]).await, "192.0.2.7");
        assert_eq!(ip_of(&[&from_peer, &forwarded]).await, "198.51.100.1");
        assert_eq!(ip_of(&[]).await, "0.0.0.0");
    }

    fn ip(last: u8) -> ClientIp {
        ClientIp(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_burst_up_to_the_count_passes_then_refuses_with_a_wait() {
        let limits = Limits::new(LimitsConfig::parse("signup.ip=3/60").unwrap());
        for _ in 0..3 {
            limits.check(Action::Signup, ip(1), None).unwrap();
        }
        let refusal = limits.check(Action::Signup, ip(1), None).unwrap_err();
        assert!(
            refusal.retry_after > Duration::from_secs(19)
                && refusal.retry_after <= Duration::from_secs(20),
            "{refusal:?}"
        );
        assert!(refusal.message.contains("sign-ups"));
        // Another client is not affected.
        limits.check(Action::Signup, ip(2), None).unwrap();
    }

    #[test]
    fn the_account_limit_holds_across_addresses_and_refusals_cost_nothing() {
        let limits =
            Limits::new(LimitsConfig::parse("playback.ip=2/60,playback.account=3/60").unwrap());
        limits
            .check(Action::PlaybackIssue, ip(1), Some("u"))
            .unwrap();
        limits
            .check(Action::PlaybackIssue, ip(1), Some("u"))
            .unwrap();
        assert!(
            limits
                .check(Action::PlaybackIssue, ip(1), Some("u"))
                .is_err(),
            "per-IP limit"
        );
        limits
            .check(Action::PlaybackIssue, ip(2), Some("u"))
            .unwrap();
        assert!(
            limits
                .check(Action::PlaybackIssue, ip(3), Some("u"))
                .is_err(),
            "per-account limit"
        );
        // The refused request on ip(3) was not counted against ip(3).
        limits
            .check(Action::PlaybackIssue, ip(3), Some("v"))
            .unwrap();
        limits
            .check(Action::PlaybackIssue, ip(3), Some("v"))
            .unwrap();
    }

    #[test]
    fn sign_ins_wait_longer_after_each_failure_and_success_resets() {
        let limits = Limits::new(LimitsConfig::parse("login.failures=2").unwrap());
        let email = "a@b.c";
        for _ in 0..2 {
            limits.login_wait(email, ip(1)).unwrap();
            limits.login_failed(email, ip(1));
        }
        let wait = limits.login_wait(email, ip(1)).unwrap_err();
        assert!(
            wait.retry_after <= Duration::from_secs(1) && wait.message.contains("failed sign-ins"),
            "{wait:?}"
        );
        limits.login_failed(email, ip(1));
        let longer = limits.login_wait(email, ip(1)).unwrap_err();
        assert!(longer.retry_after > Duration::from_secs(1), "{longer:?}");
        // Another address is not slowed by one client's failures (below the shared bar).
        limits.login_wait(email, ip(2)).unwrap();
        limits.login_succeeded(email, ip(1));
        limits.login_wait(email, ip(1)).unwrap();
    }

    #[test]
    fn specs_parse_or_say_what_is_wrong() {
        assert_eq!(LimitsConfig::parse("").unwrap(), LimitsConfig::default());
        assert!(
            LimitsConfig::parse("off")
                .unwrap()
                .limits
                .values()
                .all(|l| l.per_ip.is_none() && l.per_account.is_none())
        );
        let c = LimitsConfig::parse("upload.account=0, login.ip=5/10").unwrap();
        assert_eq!(c.limits[&Action::UploadCreate].per_account, None);
        assert_eq!(
            c.limits[&Action::Login].per_ip,
            Some(Rate {
                count: 5,
                per: Duration::from_secs(10)
            })
        );
        for bad in [
            "x",
            "nope.ip=1/1",
            "login.ip=1",
            "login.ip=0/5",
            "login.planet=1/1",
            "login.failures=x",
        ] {
            assert!(LimitsConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
