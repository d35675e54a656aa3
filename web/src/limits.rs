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

/// The key a client is counted under: its IPv4 address, or the /64 of its IPv6 address
/// (one subscriber's network holds a whole /64, and each address of it is free to use).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The longest account key counted (an email address has at most 254 bytes): a longer
/// one names no account and is not counted, so a huge key costs nothing to keep.
pub const MAX_ACCOUNT_KEY: usize = 254;

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
    /// Failed sign-ins for one email from one client before each further one waits.
    pub login_failures_free: u32,
    /// Failed sign-ins for one email from all clients within an hour above which each
    /// client gets one free failure instead of `login_failures_free`.
    pub login_failures_ceiling: u32,
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
            login_failures_ceiling: 50,
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
            login_failures_ceiling: u32::MAX,
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
            let count = || {
                value
                    .parse()
                    .map_err(|_| format!("`{item}`: expected a count"))
            };
            if key == "login.failures" {
                config.login_failures_free = count()?;
                continue;
            }
            if key == "login.ceiling" {
                config.login_failures_ceiling = count()?;
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

/// Keyed rate limiting (GCRA: one timestamp per key) and the sign-in failure counters.
pub struct Limits {
    config: LimitsConfig,
    /// Per key: the theoretical arrival time of the next request.
    buckets: Mutex<HashMap<String, Instant>>,
    /// Failed sign-ins per account and client, and per account from every client.
    failures: Mutex<FailureCounts>,
}

#[derive(Default)]
struct FailureCounts {
    by_client: HashMap<String, Failures>,
    by_account: HashMap<String, Failures>,
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
            failures: Mutex::new(FailureCounts::default()),
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
        let client = client_key(ip.0);
        let mut keys = Vec::with_capacity(2);
        if let Some(rate) = limits.per_ip {
            keys.push((format!("{}/ip/{client}", action.name()), rate));
        }
        let account = account.filter(|a| a.len() <= MAX_ACCOUNT_KEY);
        if let (Some(rate), Some(account)) = (limits.per_account, account) {
            // A sign-in's account limit is per client too: anyone may send sign-ins for
            // any email, and must not use up the owner's own.
            let key = match action {
                Action::Login => format!("login/account/{account}/{client}"),
                _ => format!("{}/account/{account}", action.name()),
            };
            keys.push((key, rate));
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

    fn failure_key(email: &str, ip: ClientIp) -> Option<String> {
        (email.len() <= MAX_ACCOUNT_KEY).then(|| format!("{email}/{}", client_key(ip.0)))
    }

    /// Whether a sign-in for `email` from `ip` must wait. Each client has its own
    /// count for each account: after the free failures each further one doubles its
    /// wait (1 s, 2 s, 4 s … 15 min), so one client's wrong passwords never lock
    /// another out. Failures from every client together set a ceiling: above it, each
    /// client gets one free failure instead of several, so guessing spread over many
    /// addresses slows down as well, while a client that has not failed still signs in.
    pub fn login_wait(&self, email: &str, ip: ClientIp) -> Result<(), Refusal> {
        let Some(key) = Self::failure_key(email, ip) else {
            return Ok(());
        };
        let now = Instant::now();
        let counts = self.failures.lock().expect("limits lock");
        let recent = |f: &&Failures| now.duration_since(f.last) <= FAILURE_MEMORY;
        let Some(mine) = counts.by_client.get(&key).filter(recent) else {
            return Ok(());
        };
        let besieged = counts
            .by_account
            .get(email)
            .filter(recent)
            .is_some_and(|f| f.count >= self.config.login_failures_ceiling);
        let free = if besieged {
            1.min(self.config.login_failures_free)
        } else {
            self.config.login_failures_free
        };
        if mine.count < free {
            return Ok(());
        }
        let wait = Duration::from_secs(1u64 << (mine.count - free).min(10)).min(MAX_LOGIN_WAIT);
        let ready = mine.last + wait;
        if ready <= now {
            return Ok(());
        }
        Err(Refusal {
            message: format!(
                "too many failed sign-ins for this account from here; try again in {} s",
                (ready - now).as_secs().max(1)
            ),
            retry_after: ready - now,
        })
    }

    pub fn login_failed(&self, email: &str, ip: ClientIp) {
        let Some(key) = Self::failure_key(email, ip) else {
            return;
        };
        let now = Instant::now();
        let mut guard = self.failures.lock().expect("limits lock");
        let counts = &mut *guard;
        for (table, key) in [
            (&mut counts.by_client, key),
            (&mut counts.by_account, email.to_string()),
        ] {
            if table.len() > PRUNE_ABOVE {
                table.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
            }
            let f = table.entry(key).or_insert(Failures {
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

    /// A client that signs in is forgiven its failures; the account's count stays.
    pub fn login_succeeded(&self, email: &str, ip: ClientIp) {
        if let Some(key) = Self::failure_key(email, ip) {
            self.failures
                .lock()
                .expect("limits lock")
                .by_client
                .remove(&key);
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
    fn one_clients_failures_never_lock_out_another_but_many_clients_lower_the_bar() {
        let limits = Limits::new(LimitsConfig::parse("login.failures=5,login.ceiling=20").unwrap());
        let email = "owner@school.edu";
        for _ in 0..100 {
            limits.login_failed(email, ip(1));
        }
        assert!(
            limits.login_wait(email, ip(1)).is_err(),
            "the guesser waits"
        );
        limits
            .login_wait(email, ip(2))
            .expect("the owner, elsewhere, does not");
        // 100 failures are past the ceiling: a client with one failure now waits…
        limits.login_failed(email, ip(3));
        assert!(limits.login_wait(email, ip(3)).is_err());
        // …and one without any still signs in.
        limits.login_wait(email, ip(4)).unwrap();
        // Another account is untouched.
        limits.login_failed("other@school.edu", ip(3));
        limits.login_wait("other@school.edu", ip(3)).unwrap();
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_huge_keys_are_not_counted() {
        let v6 = |s: &str| ClientIp(s.parse().unwrap());
        assert_eq!(
            client_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        let limits = Limits::new(LimitsConfig::parse("signup.ip=2/60").unwrap());
        limits
            .check(Action::Signup, v6("2001:db8::1"), None)
            .unwrap();
        limits
            .check(Action::Signup, v6("2001:db8::ffff:2"), None)
            .unwrap();
        assert!(
            limits
                .check(Action::Signup, v6("2001:db8::3"), None)
                .is_err(),
            "one /64, one client"
        );
        limits
            .check(Action::Signup, v6("2001:db8:0:1::1"), None)
            .unwrap();

        let limits = Limits::new(LimitsConfig::default());
        let huge = "x".repeat(128 * 1024);
        limits.check(Action::Login, ip(1), Some(&huge)).unwrap();
        limits.login_failed(&huge, ip(1));
        let kept_bytes: usize = limits.buckets.lock().unwrap().keys().map(String::len).sum();
        assert!(kept_bytes < 100, "{kept_bytes} bytes of keys kept");
        assert!(limits.failures.lock().unwrap().by_client.is_empty());
    }

    #[test]
    fn sign_ins_for_an_email_from_many_places_do_not_use_up_its_rate() {
        let limits =
            Limits::new(LimitsConfig::parse("login.ip=100/60,login.account=3/60").unwrap());
        for last in 1..=10 {
            for _ in 0..3 {
                limits
                    .check(Action::Login, ip(last), Some("owner@school.edu"))
                    .unwrap();
            }
        }
        assert!(
            limits
                .check(Action::Login, ip(1), Some("owner@school.edu"))
                .is_err()
        );
        limits
            .check(Action::Login, ip(11), Some("owner@school.edu"))
            .unwrap();
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
