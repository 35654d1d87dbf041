//! The receiver's command line: every flag, its environment variable
//! (`CMC_` and the flag's name), and its default in human units. Kept
//! apart from `main.rs` so that the tests parse the same flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cmc_webhook_core::IdempotencyKey;
use cmc_webhook_core::client_ip::{ClientIpSource, ForwardedHeader};

use cmc_webhook_core::allowlist::{AllowlistFile, IpSet};
use cmc_webhook_core::ipnet::IpNet;

use crate::app::{Format, Options};

/// Receive Customers Mail Cloud webhooks on POST /mails, store them in the
/// inbox before answering 200, and print them (events and inbound mails)
/// on stdout; logs go to stderr.
///
/// Every flag can also be set by the environment variable shown with it,
/// or as a key of the --config file (TOML; `[[source]]` tables add named
/// sources, several CMC accounts on one endpoint): a flag given on the
/// command line wins over its environment variable, which wins over the
/// file.
///
/// Secrets (--api-key, --basic-auth, a --store URL with a password, the
/// metrics credentials, the console's users, the relay's signing secrets):
/// give them in the environment or in a file (--api-key-file,
/// --basic-auth-file, --store-file, --metrics-auth-file, CMC_CONSOLE_AUTH
/// or --console-auth-file, CMC_RELAY_SECRET or --relay-secret-file, or
/// CMC_*_FILE), never as flags: a flag's value
/// shows in `ps` to every user of the machine.
#[derive(Debug, Parser)]
#[command(name = "cmc-receiver", version)]
pub struct Args {
    /// A TOML file of settings: each flag's name is a key (`body_limit =
    /// "25MiB"`, `allow = ["203.0.113.0/24"]`), and `[[source]]` tables
    /// add named sources. Flags and environment variables win over it.
    #[arg(long, global = true, value_name = "PATH", env = "CMC_CONFIG")]
    pub config: Option<PathBuf>,

    /// The named sources of the --config file (`[[source]]` tables).
    #[arg(skip)]
    pub sources: Vec<SourceConfig>,

    /// Where webhooks are stored: sqlite:PATH, postgres://USER@HOST:PORT/DB
    /// (several receivers may share one database), or none (printed before the 200, not stored). Default:
    /// sqlite:cmc-inbox.sqlite3. A URL with a password belongs in
    /// CMC_STORE or --store-file, not in a flag (flags show in `ps`).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "CMC_STORE",
        hide_env_values = true
    )]
    pub store: Option<Secret>,

    /// A file holding the --store URL (one line), for a URL with a
    /// password.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CMC_STORE_FILE",
        conflicts_with = "store"
    )]
    pub store_file: Option<PathBuf>,

    /// The PostgreSQL schema of the inbox's tables and of its migration
    /// history (a plain identifier: lowercase letters, digits, _), made
    /// by `migrate` if missing. Ignored for a SQLite store.
    #[arg(
        long,
        global = true,
        value_name = "SCHEMA",
        env = "CMC_PG_SCHEMA",
        default_value = "cmc_webhook"
    )]
    pub pg_schema: String,

    /// Done rows older than this are deleted (hourly while serving, and by
    /// `prune`): 30d, 12h, 90m, 3600s.
    #[arg(long, global = true, value_name = "AGE", env = "CMC_RETAIN", default_value = "30d", value_parser = parse_duration)]
    pub retain: Duration,

    /// Each request as it arrived (its body, the api_key redacted, and the
    /// headers that matter) is kept this long, for `reparse`; pruned with
    /// the rows: 7d, 12h, 90m, 3600s.
    #[arg(long, global = true, value_name = "AGE", env = "CMC_RAW_RETAIN", default_value = "7d", value_parser = parse_duration)]
    pub raw_retain: Duration,

    /// Keep no raw request (neither accepted nor refused bodies).
    #[arg(long, global = true, env = "CMC_NO_RAW_REQUESTS")]
    pub no_raw_requests: bool,

    /// What to do (none: serve).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on: IPv4 or IPv6, e.g. 0.0.0.0:8080 or [::]:8080.
    // The text is the flag's help: `[::]` is an address, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, env = "CMC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve HTTPS (TLS 1.3 and 1.2) with this certificate chain: PEM, the
    /// server's certificate first, then its intermediates (certbot's
    /// fullchain.pem). Read again when it changes and on SIGHUP; a pair
    /// that cannot be used then is logged and the pair in use kept. With
    /// --tls-key.
    #[arg(long, value_name = "PATH", env = "CMC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert: PEM, PKCS #8, PKCS #1 or SEC1
    /// (certbot's privkey.pem).
    #[arg(long, value_name = "PATH", env = "CMC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Allowed client networks (CIDRs or addresses, separated by commas or
    /// spaces); repeatable. Without --allow or --allow-file: loopback only
    /// (127.0.0.0/8 and ::1).
    #[arg(long, value_name = "CIDRS", env = "CMC_ALLOW")]
    pub allow: Vec<String>,

    /// A file of allowed networks (CIDRs or addresses, `#` comments), read
    /// again when it changes and on SIGHUP; a file that does not parse
    /// keeps the list in force. Networks given with --allow stay allowed
    /// beside it.
    #[arg(long, value_name = "PATH", env = "CMC_ALLOW_FILE")]
    pub allow_file: Option<PathBuf>,

    /// Learning mode: admit clients outside the allowlist, log each new
    /// address once, and print them with their counts on exit and on
    /// SIGUSR1, ready to paste into --allow. Every other check still
    /// applies: set --api-key or --basic-auth.
    #[arg(long, env = "CMC_REPORT_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    pub report_only: bool,

    /// Trusted proxy networks whose client address header is believed
    /// (separated by commas or spaces); repeatable.
    #[arg(long, value_name = "CIDRS", env = "CMC_TRUST_PROXY")]
    pub trust_proxy: Vec<String>,

    /// Where the client address is read from: peer (no proxy in front),
    /// x-forwarded-for (walked from the right past the trusted proxies),
    /// forwarded, x-real-ip (nginx), cf-connecting-ip (Cloudflare),
    /// true-client-ip (Akamai), fly-client-ip (Fly.io) or
    /// cloudfront-viewer-address (CloudFront). A header is believed only
    /// from a --trust-proxy peer (any other peer is its own client), so a
    /// header source needs --trust-proxy. Pick the header your platform
    /// overwrites: one it passes on is the client's to write. Default:
    /// --forwarded-header.
    #[arg(long, value_name = "NAME", env = "CMC_CLIENT_IP_SOURCE", value_parser = parse_client_ip_source)]
    pub client_ip_source: Option<ClientIpSource>,

    /// The list header trusted proxies write the client to, when
    /// --client-ip-source is not set (kept for older configurations).
    #[arg(long, value_name = "HEADER", env = "CMC_FORWARDED_HEADER", default_value = "x-forwarded-for", value_parser = ["x-forwarded-for", "forwarded"])]
    pub forwarded_header: String,

    /// The time zone set in the CMC console (an IANA name such as
    /// Asia/Tokyo or UTC), in which CMC writes `created` times: that of
    /// the default source, and of the named sources that set none.
    /// Default: Asia/Tokyo.
    #[arg(long, value_name = "ZONE", env = "CMC_TIME_ZONE")]
    pub time_zone: Option<String>,

    /// Largest accepted body: 25MiB, 512KiB, 2MB, or bytes.
    #[arg(long, value_name = "SIZE", env = "CMC_BODY_LIMIT", default_value = "25MiB", value_parser = parse_size)]
    pub body_limit: usize,

    /// Required api_key (as set in the CMC console); repeatable for
    /// rotation (in the environment: separated by commas). Give it in
    /// CMC_API_KEY or --api-key-file rather than as a flag (flags show in
    /// `ps`). A blank key, or one with white space at either end, is
    /// refused.
    #[arg(
        long,
        value_name = "KEY",
        env = "CMC_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_key: Vec<Secret>,

    /// A file of required api_keys, one per line (line ends, LF or CRLF,
    /// are not part of a key; empty lines are skipped); beside --api-key.
    #[arg(long, value_name = "PATH", env = "CMC_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Required BASIC credentials, USER:PASSWORD (as set in the CMC
    /// console); repeatable for rotation (the environment variable holds
    /// one pair: a password may hold commas). Give them in CMC_BASIC_AUTH
    /// or --basic-auth-file rather than as a flag (flags show in `ps`).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CMC_BASIC_AUTH",
        hide_env_values = true
    )]
    pub basic_auth: Vec<Secret>,

    /// A file of required BASIC credentials, USER:PASSWORD, one pair per
    /// line; beside --basic-auth.
    #[arg(long, value_name = "PATH", env = "CMC_BASIC_AUTH_FILE")]
    pub basic_auth_file: Option<PathBuf>,

    /// Write inbound attachments into this directory, under sanitised names.
    #[arg(long, value_name = "DIR", env = "CMC_SAVE_DIR")]
    pub save_dir: Option<PathBuf>,

    /// How each event and mail is printed: json (one JSON line each) or
    /// compact (one short line: time, type, status, recipient).
    #[arg(long, value_enum, env = "CMC_FORMAT", default_value = "json")]
    pub format: Format,

    /// Serve metrics in Prometheus' text format on http://ADDR/metrics
    /// GET /metrics only, with the
    /// timeouts of the webhook listener and at most 16 connections. Bind
    /// it to an internal address (127.0.0.1:9000, a private network), not
    /// where the webhooks come from.
    #[arg(long, value_name = "ADDR", env = "CMC_METRICS")]
    pub metrics: Option<SocketAddr>,

    /// A file of BASIC credentials, USER:PASSWORD one per line, that
    /// /metrics requires (or one pair in the environment variable
    /// CMC_METRICS_AUTH; there is no flag, since flags show in `ps`).
    #[arg(long, value_name = "PATH", env = "CMC_METRICS_AUTH_FILE")]
    pub metrics_auth_file: Option<PathBuf>,

    /// Serve the web console on http://ADDR/ (https:// with --tls-cert),
    /// beside the webhook endpoint, on the same store: loopback
    /// (127.0.0.1:8025) unless it must be reached from elsewhere. It needs
    /// its users: CMC_CONSOLE_AUTH (USER:PASSWORD, comma-separated) or
    /// --console-auth-file; it does not start without them.
    #[arg(long, value_name = "ADDR", env = "CMC_CONSOLE")]
    pub console: Option<SocketAddr>,

    /// A name the console answers to besides its address and localhost
    /// (a proxy's or a DNS name in front of it); repeatable. Requests
    /// naming another host are refused (421), which stops DNS rebinding.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "CMC_CONSOLE_HOST",
        value_delimiter = ','
    )]
    pub console_host: Vec<String>,

    /// A file of the console's users, USER:PASSWORD one per line (or the
    /// environment variable CMC_CONSOLE_AUTH; there is no flag, since
    /// flags show in `ps`).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CMC_CONSOLE_AUTH_FILE"
    )]
    pub console_auth_file: Option<PathBuf>,

    /// How long a client may take to send a request's headers (and a
    /// keep-alive connection may stay idle). More than 0.
    #[arg(long, value_name = "TIME", env = "CMC_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,

    /// How long a request may take from its headers to its answer; the
    /// body must arrive within it (408 otherwise). More than 0.
    #[arg(long, value_name = "TIME", env = "CMC_BODY_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub body_timeout: Duration,

    /// The most connections open at once; more wait to be accepted. At
    /// least 1.
    #[arg(
        long,
        value_name = "N",
        env = "CMC_MAX_CONNECTIONS",
        default_value = "512",
        value_parser = parse_count
    )]
    pub max_connections: usize,

    /// The most request body bytes held by all requests in flight at
    /// once (25MiB, 512KiB, or bytes); past it, a request is answered 503
    /// with Retry-After, its body unread. At least --body-limit; by
    /// default --body-limit times --max-connections, at most 8 times.
    #[arg(long, value_name = "SIZE", env = "CMC_MAX_INFLIGHT_BYTES", value_parser = parse_size)]
    pub max_inflight_bytes: Option<usize>,

    /// The most requests one connection may carry before it is closed. At
    /// least 1.
    #[arg(
        long,
        value_name = "N",
        env = "CMC_MAX_REQUESTS_PER_CONNECTION",
        default_value = "100",
        value_parser = parse_count
    )]
    pub max_requests_per_connection: usize,

    /// How long a connection may stay open; it is closed after the request
    /// it is carrying then. More than 0.
    #[arg(long, value_name = "TIME", env = "CMC_MAX_CONNECTION_AGE", default_value = "60s", value_parser = parse_timeout)]
    pub max_connection_age: Duration,

    /// Handlers the worker runs at once. At least 1.
    #[arg(long, value_name = "N", env = "CMC_CONCURRENCY", default_value = "16", value_parser = parse_count)]
    pub concurrency: usize,

    /// Runs of the handler per row before it is dead. At least 1.
    #[arg(long, value_name = "N", env = "CMC_MAX_ATTEMPTS", default_value = "12", value_parser = parse_attempts)]
    pub max_attempts: u32,

    /// Routes inbound mails to the mailbox NAME when their envelope
    /// recipient matches PATTERN: an address, `*@domain`, `prefix*@domain`
    /// (`reply+*@example.jp`), `/regex/`, `filter:RULE` (CMC's inbound
    /// rule), `filter:RULE PATTERN` (both), any of them after
    /// `source:NAME` (only that CMC account's mails; `source:NAME` alone:
    /// all of them), or `*` for the mails no other route takes. Repeatable, tried in order; a NAME given twice is one
    /// mailbox with two routes. Without a `*` route, the mails no route
    /// takes are kept as "unrouted". (In the environment: separated by
    /// semicolons; give a regex with a semicolon as a flag.)
    #[arg(
        long,
        value_name = "NAME=PATTERN",
        env = "CMC_MAILBOX",
        value_delimiter = ';'
    )]
    pub mailbox: Vec<String>,

    /// How long the handlers in flight get to finish at shutdown.
    #[arg(long, value_name = "TIME", env = "CMC_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// The relay to the team's application (`--relay`).
    #[command(flatten)]
    pub relay: RelayArgs,
}

/// The store used without --store or --store-file.
pub const DEFAULT_STORE: &str = "sqlite:cmc-inbox.sqlite3";

impl Args {
    /// The store's URL: --store (or CMC_STORE), the line of --store-file
    /// (or CMC_STORE_FILE), or [`DEFAULT_STORE`].
    pub fn store(&self) -> Result<String, String> {
        if let Some(url) = &self.store {
            return Ok(url.0.clone());
        }
        match &self.store_file {
            Some(path) => {
                let lines = read_secrets("--store-file", path)?;
                match <[String; 1]>::try_from(lines) {
                    Ok([url]) => Ok(url),
                    Err(_) => Err(format!(
                        "--store-file {}: expected one line, the store's URL",
                        path.display()
                    )),
                }
            }
            None => Ok(DEFAULT_STORE.to_owned()),
        }
    }

    /// The BASIC credentials /metrics requires: the lines of
    /// --metrics-auth-file, or the pair in `CMC_METRICS_AUTH` (`env` reads
    /// the environment: `std::env::var`).
    pub fn metrics_auth(&self, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Basic>, String> {
        let mut pairs = Vec::new();
        if let Some(pair) = env("CMC_METRICS_AUTH") {
            pairs.push(("CMC_METRICS_AUTH", pair));
        }
        if let Some(path) = &self.metrics_auth_file {
            for pair in read_secrets("--metrics-auth-file", path)? {
                pairs.push(("--metrics-auth-file", pair));
            }
        }
        if !pairs.is_empty() && self.metrics.is_none() {
            return Err("the metrics credentials are set but --metrics is not".to_owned());
        }
        pairs
            .into_iter()
            .map(|(name, pair)| parse_basic(&pair).map_err(|e| format!("{name}: {e}")))
            .collect()
    }

    /// The console's users: the lines of --console-auth-file and the
    /// comma-separated pairs of `CMC_CONSOLE_AUTH` (`env` reads the
    /// environment). Required: an error names both ways when neither
    /// gives a user.
    #[cfg(feature = "console")]
    pub fn console_users(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<crate::console::auth::Users, String> {
        let mut pairs: Vec<String> = Vec::new();
        if let Some(list) = env("CMC_CONSOLE_AUTH") {
            pairs.extend(list.split(',').filter(|p| !p.is_empty()).map(str::to_owned));
        }
        if let Some(path) = &self.console_auth_file {
            pairs.extend(read_secrets("--console-auth-file", path)?);
        }
        if pairs.is_empty() {
            return Err(
                "the console needs its users: set CMC_CONSOLE_AUTH=USER:PASSWORD \
                        (several comma-separated) or --console-auth-file PATH (USER:PASSWORD \
                        one per line); it never starts without them"
                    .to_owned(),
            );
        }
        crate::console::auth::Users::parse(pairs.iter().map(String::as_str))
            .map_err(|e| format!("the console's users: {e}"))
    }

    /// The forwarding header, read from its checked name.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.forwarded_header.parse().unwrap_or_default()
    }

    /// The client address source chosen with --client-ip-source, checked
    /// against --forwarded-header and --trust-proxy.
    fn checked_client_ip_source(
        &self,
        trust_proxy: &[IpNet],
    ) -> Result<Option<ClientIpSource>, String> {
        let Some(source) = self.client_ip_source else {
            return Ok(None);
        };
        let header = self.forwarded_header();
        if header != ForwardedHeader::default() && ClientIpSource::from(header) != source {
            return Err(format!(
                "--forwarded-header {header} and --client-ip-source {source} disagree: \
                 --client-ip-source replaces --forwarded-header, drop the latter"
            ));
        }
        if source != ClientIpSource::Peer && trust_proxy.is_empty() {
            return Err(format!(
                "--client-ip-source {source}: the header is believed only from a trusted proxy, \
                 and none is given: set --trust-proxy to the networks of the proxies that write \
                 it (or use --client-ip-source peer when nothing stands in front)"
            ));
        }
        Ok(Some(source))
    }

    /// The app's options, and the allowlist file when one is named (read
    /// now: a file that cannot be read stops the start).
    pub fn options(&self) -> Result<(Options, Option<AllowlistFile>), String> {
        let mut allow: Vec<IpNet> = Vec::new();
        for list in &self.allow {
            allow.extend(
                list.parse::<IpSet>()
                    .map_err(|e| format!("--allow: {e}"))?
                    .nets(),
            );
        }
        let mut trust_proxy = Vec::new();
        for list in &self.trust_proxy {
            trust_proxy.extend(
                list.parse::<IpSet>()
                    .map_err(|e| format!("--trust-proxy: {e}"))?
                    .nets(),
            );
        }
        let mut api_keys: Vec<String> = self.api_key.iter().map(|k| k.0.clone()).collect();
        if let Some(path) = &self.api_key_file {
            api_keys.extend(read_secrets("--api-key-file", path)?);
        }
        for key in &api_keys {
            check_secret("--api-key", "a key", key)?;
        }
        let mut basic_pairs: Vec<(&str, String)> = self
            .basic_auth
            .iter()
            .map(|b| ("--basic-auth", b.0.clone()))
            .collect();
        if let Some(path) = &self.basic_auth_file {
            for pair in read_secrets("--basic-auth-file", path)? {
                basic_pairs.push(("--basic-auth-file", pair));
            }
        }
        let basic_auth = basic_pairs
            .iter()
            .map(|(name, pair)| {
                parse_basic(pair)
                    .map(|b| (b.user, b.password))
                    .map_err(|e| format!("{name}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow_file = match &self.allow_file {
            Some(path) => {
                Some(AllowlistFile::open(path).map_err(|e| format!("--allow-file: {e}"))?)
            }
            None => None,
        };
        if self.report_only
            && api_keys.is_empty()
            && basic_auth.is_empty()
            && self.sources.is_empty()
        {
            return Err(
                "--report-only admits clients outside the allowlist: set --api-key or \
                        --basic-auth too (the same as in the CMC console)"
                    .to_owned(),
            );
        }
        if allow.is_empty() && allow_file.is_none() && !self.report_only {
            allow = vec![
                "127.0.0.0/8".parse().map_err(|e| format!("{e}"))?,
                "::1/128".parse().map_err(|e| format!("{e}"))?,
            ];
        }
        let time_zone = match &self.time_zone {
            Some(name) => Some(zone("--time-zone", name)?),
            None => None,
        };
        let sources = self
            .sources
            .iter()
            .map(SourceConfig::options)
            .collect::<Result<Vec<_>, _>>()?;
        let client_ip_source = self.checked_client_ip_source(&trust_proxy)?;
        let options = Options {
            client_ip_source,
            time_zone,
            sources,
            allow,
            allowlist: allow_file.as_ref().map(AllowlistFile::allowlist),
            report_only: self.report_only,
            trust_proxy,
            forwarded_header: self.forwarded_header(),
            body_limit: self.body_limit,
            api_keys,
            basic_auth,
            save_dir: self.save_dir.clone(),
            format: self.format,
            max_inflight_bytes: self.inflight_budget()?,
        };
        Ok((options, allow_file))
    }
}

impl Args {
    /// `--max-inflight-bytes`, or its default from the body limit and the
    /// connection cap.
    fn inflight_budget(&self) -> Result<usize, String> {
        match self.max_inflight_bytes {
            Some(bytes) if bytes < self.body_limit => Err(format!(
                "--max-inflight-bytes {bytes} is below --body-limit {}: a body at the limit \
                 could never be taken",
                self.body_limit
            )),
            Some(bytes) => Ok(bytes),
            None => Ok(self
                .body_limit
                .saturating_mul(self.max_connections.clamp(1, 8))),
        }
    }
}

/// Operations on the store (without a subcommand, the receiver serves).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Applies the migrations the store has not seen, prints what it did
    /// (one JSON line) and exits: the deploy step that runs before the
    /// receivers start. (Serving migrates at start too; the other
    /// subcommands never migrate: they check that the store's schema is
    /// this version's.)
    Migrate,
    /// Rows per state, and the relay targets' states the receivers
    /// recorded (paused, probing, closed).
    Counts {
        /// Only the rows of this source (`default`: the one account of
        /// the flags, and rows stored before sources existed).
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// First rebuild the counts from the rows (about a second per
        /// million rows; on SQLite one write transaction, which receiving
        /// waits for; on PostgreSQL no table is locked) and print each
        /// count that was wrong: after triggers were disabled, or an
        /// application's SQL the triggers cannot see.
        #[arg(long)]
        recount: bool,
    },
    /// The dead rows, with their last errors.
    Dead {
        /// The most rows listed (at least 1).
        #[arg(long, default_value = "100", value_parser = parse_count)]
        limit: usize,
        /// Only the rows of this source.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
    },
    /// Sets done or dead rows back to pending, to be handled again.
    Replay {
        /// The row with this idempotency key (32 hex digits).
        #[arg(long, conflicts_with_all = ["message_id", "dead"])]
        key: Option<IdempotencyKey>,
        /// The rows of this sent mail's Message-ID.
        #[arg(long, conflicts_with = "dead")]
        message_id: Option<String>,
        /// Every dead row.
        #[arg(long)]
        dead: bool,
        /// Only events, or only mails.
        #[arg(long, value_parser = ["event", "mail"])]
        kind: Option<String>,
        /// Only the rows of this source.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
    },
    /// Every event stored for a sent mail, in order.
    History {
        /// The Message-ID, with its angle brackets.
        message_id: String,
        /// Only the events of this source.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
    },
    /// Deletes the rows done before --retain, and the raw requests
    /// received before --raw-retain.
    Prune,
    /// Reads the kept raw requests again with this version's parser and
    /// prints, one JSON line each, the requests in which something differs
    /// (events and mails no row holds, rows whose JSON differs), then a
    /// summary line. A dry run unless --apply: then the new rows are added
    /// (never an event twice; a changed row is only reported).
    Reparse {
        /// Add the new rows (without it, nothing is written).
        #[arg(long)]
        apply: bool,
        /// Only this raw request; repeatable.
        #[arg(long, value_name = "ID")]
        id: Vec<i64>,
        /// Only the raw requests with an id above this.
        #[arg(long, value_name = "ID", default_value_t = 0)]
        after: i64,
    },
    /// The routed inbound mails: how many each mailbox has in each state,
    /// or (with --list) the mails themselves as JSON lines.
    Mailboxes {
        /// List the mails rather than count them.
        #[arg(long)]
        list: bool,
        /// Only this mailbox's mails.
        #[arg(long, value_name = "NAME", conflicts_with = "unrouted")]
        name: Option<String>,
        /// Only the unrouted mails.
        #[arg(long)]
        unrouted: bool,
        /// Only mails in this state: pending, processing, delivered,
        /// failed, bounced, dead or unrouted.
        #[arg(long)]
        state: Option<String>,
        /// The most mails listed (at least 1).
        #[arg(long, default_value = "100", value_parser = parse_count)]
        limit: usize,
        /// List the mails after this delivery id (paging).
        #[arg(long, value_name = "ID", default_value_t = 0)]
        after: i64,
        /// Hand the mails taken (dead ones when no --state is given) to
        /// their mailbox again; unrouted ones are routed again.
        #[arg(long, conflicts_with = "list")]
        replay: bool,
    },
    /// Serves only the web console, on a store that other processes (the
    /// receivers) fill: replays and changes are written to it. Its users
    /// come from CMC_CONSOLE_AUTH or --console-auth-file, as for
    /// --console; HTTPS with --tls-cert and --tls-key.
    Console {
        /// The address to serve it on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8025")]
        listen: SocketAddr,
    },
    /// The suppression list the worker keeps from bounces, successes and
    /// CMC's blocks.
    Suppressions {
        /// What to do with the list.
        #[command(subcommand)]
        action: SuppressionCommand,
    },
}

impl Command {
    /// Whether the subcommand writes to the store: the others open it
    /// read-only, so that a read-only file, role or replica can be
    /// inspected.
    pub fn writes(&self) -> bool {
        match self {
            Command::Migrate | Command::Replay { .. } | Command::Prune => true,
            Command::Console { .. } => true,
            Command::Reparse { apply, .. } => *apply,
            Command::Mailboxes { replay, .. } => *replay,
            Command::Suppressions { action } => matches!(
                action,
                SuppressionCommand::Add { .. } | SuppressionCommand::Remove { .. }
            ),
            Command::Counts { recount, .. } => *recount,
            Command::Dead { .. } | Command::History { .. } => false,
        }
    }
}

/// What to do with the suppression list.
#[derive(Debug, Subcommand)]
pub enum SuppressionCommand {
    /// Whether mail to ADDRESS must not be sent now: one JSON line.
    Check {
        /// The recipient address.
        address: String,
    },
    /// The suppressed addresses (JSON lines), in the order of addresses.
    List {
        /// Also the rows that only count bounces, and expired ones.
        #[arg(long)]
        all: bool,
        /// Only this reason: hard, soft, cmc_suppressed, unsubscribed,
        /// cmc_list, manual.
        #[arg(long)]
        reason: Option<String>,
        /// The addresses after this one (paging).
        #[arg(long)]
        after: Option<String>,
        /// The most rows (at least 1).
        #[arg(long, default_value = "100", value_parser = parse_count)]
        limit: usize,
    },
    /// Suppresses ADDRESS by hand, and says what that did: `"outcome"` is
    /// `added`, `replaced` (an earlier suppression, in `"previous"`, gave
    /// way) or `unchanged` (`"because": "unsubscribed"`: an unsubscribe is
    /// for good).
    Add {
        /// The recipient address.
        address: String,
        /// Why (kept in the row and its history).
        #[arg(long)]
        note: String,
        /// How long: 30d, 12h (until removed when not given; 0s is refused).
        #[arg(long = "for", value_name = "AGE", value_parser = parse_duration)]
        lasts: Option<Duration>,
    },
    /// Lifts the suppression of ADDRESS and clears its counts.
    Remove {
        /// The recipient address.
        address: String,
        /// Why (kept in its history).
        #[arg(long)]
        note: String,
    },
    /// The changes of ADDRESS's row, newest first, a page at a time (JSON
    /// lines, each with its `id`); how many there are in all, and the
    /// `--before` of the next page, go to stderr.
    History {
        /// The recipient address.
        address: String,
        /// The most changes printed (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Only changes older than the change with this id (the `--before`
        /// the page before printed).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
}

/// A `[[source]]` table of the --config file: one named CMC account.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Its name: 1 to 64 ASCII letters, digits, `_`, `-` or `.`.
    pub name: String,
    /// Accepted `api_key`s: one string, or an array.
    #[serde(default)]
    api_key: OneOrMany,
    /// A file of `api_key`s, one per line.
    #[serde(default)]
    api_key_file: Option<PathBuf>,
    /// BASIC credentials, `USER:PASSWORD`: one string, or an array.
    #[serde(default)]
    basic_auth: OneOrMany,
    /// A file of BASIC credentials, one pair per line.
    #[serde(default)]
    basic_auth_file: Option<PathBuf>,
    /// Its own allowlist (CIDRs or addresses): one string, or an array;
    /// without it, the receiver's (`allow`, `allow_file`).
    #[serde(default)]
    allow: OneOrMany,
    /// The zone of its CMC console (IANA name); the receiver's
    /// `time_zone` without it.
    #[serde(default)]
    time_zone: Option<String>,
    /// Its own path (beside `/mails`), for example `/mails/sandbox`.
    #[serde(default)]
    path: Option<String>,
}

/// One string, or an array of them.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> &[String] {
        match self {
            OneOrMany::None => &[],
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("api_keys", &self.api_key.values().len())
            .field("api_key_file", &self.api_key_file)
            .field("basic_auth", &self.basic_auth.values().len())
            .field("basic_auth_file", &self.basic_auth_file)
            .field("allow", &self.allow.values())
            .field("time_zone", &self.time_zone)
            .field("path", &self.path)
            .finish()
    }
}

impl SourceConfig {
    /// The app's options of this source, its secret files read.
    fn options(&self) -> Result<crate::app::SourceOptions, String> {
        let name = cmc_webhook_core::printable(&self.name, 64);
        let at = format!("[[source]] `{name}`");
        let mut api_keys = self.api_key.values().to_vec();
        if let Some(path) = &self.api_key_file {
            api_keys.extend(read_secrets(&format!("{at} api_key_file"), path)?);
        }
        for key in &api_keys {
            check_secret(&format!("{at} api_key"), "a key", key)?;
        }
        let mut pairs: Vec<(String, String)> = self
            .basic_auth
            .values()
            .iter()
            .map(|p| (format!("{at} basic_auth"), p.clone()))
            .collect();
        if let Some(path) = &self.basic_auth_file {
            let flag = format!("{at} basic_auth_file");
            for pair in read_secrets(&flag, path)? {
                pairs.push((flag.clone(), pair));
            }
        }
        let basic_auth = pairs
            .iter()
            .map(|(flag, pair)| {
                parse_basic(pair)
                    .map(|b| (b.user, b.password))
                    .map_err(|e| format!("{flag}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if api_keys.is_empty() && basic_auth.is_empty() {
            return Err(format!(
                "{at}: no api_key and no basic_auth: a source is told apart by its credentials"
            ));
        }
        let mut allow = Vec::new();
        for list in self.allow.values() {
            allow.extend(
                list.parse::<IpSet>()
                    .map_err(|e| format!("{at} allow: {e}"))?
                    .nets(),
            );
        }
        let time_zone = match &self.time_zone {
            Some(tz) => Some(zone(&format!("{at} time_zone"), tz)?),
            None => None,
        };
        Ok(crate::app::SourceOptions {
            name: self.name.clone(),
            api_keys,
            basic_auth,
            allow,
            time_zone,
            path: self.path.clone(),
        })
    }
}

/// A time zone by its IANA name.
fn zone(what: &str, name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|_| {
        format!(
            "{what}: `{}` is not a time zone this machine knows (an IANA name: Asia/Tokyo, UTC)",
            cmc_webhook_core::printable(name, 64)
        )
    })
}

/// A value that `Debug` does not show.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// BASIC credentials; `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.user)
    }
}

/// `USER:PASSWORD`; the password may hold colons, the user may not. Both
/// must be non-blank, without white space at either end. The error does
/// not repeat the value, which may be a password.
pub fn parse_basic(s: &str) -> Result<Basic, String> {
    match s.split_once(':') {
        Some((user, password)) if !user.trim().is_empty() && !password.trim().is_empty() => {
            check_secret("", "the user name", user)?;
            check_secret("", "the password", password)?;
            Ok(Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err("expected USER:PASSWORD, both non-blank (the value is not shown)".to_owned()),
    }
}

/// Refuses a blank secret, or one with white space at either end (a `\r`
/// left by a CRLF file, a space after a comma), without showing it.
pub fn check_secret(flag: &str, what: &str, secret: &str) -> Result<(), String> {
    let flag = if flag.is_empty() {
        String::new()
    } else {
        format!("{flag}: ")
    };
    if secret.trim().is_empty() {
        return Err(format!("{flag}{what} is empty or only white space"));
    }
    if secret.trim() != secret {
        return Err(format!(
            "{flag}{what} begins or ends with white space (a \\r from a CRLF file? a space \
             after a comma?): remove it (the value is not shown)"
        ));
    }
    Ok(())
}

/// The largest secrets file read.
const MAX_SECRETS_FILE: u64 = 64 << 10;

/// The secrets of a file, one per line: the line ends (LF or CRLF) are not
/// part of them, empty lines are skipped, and a line with white space at
/// either end is refused (it is not shown). At least one secret.
pub fn read_secrets(flag: &str, path: &std::path::Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let bytes = crate::read::read_regular(path, MAX_SECRETS_FILE).map_err(|e| match e {
        crate::read::ReadError::TooLarge(_) => {
            format!("{flag} {shown}: larger than {MAX_SECRETS_FILE} bytes, not a file of secrets")
        }
        other => format!("{flag} {shown}: {other}"),
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{flag} {shown}: not UTF-8 text (the content is not shown)"))?;
    let mut secrets = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        check_secret(&format!("{flag} {shown}"), &format!("line {}", n + 1), line)?;
        secrets.push(line.to_owned());
    }
    if secrets.is_empty() {
        return Err(format!("{flag} {shown}: no secret in the file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{flag} {shown} can be read by other users (mode {:o}): chmod 600 it",
                meta.permissions().mode() & 0o777
            );
        }
    }
    Ok(secrets)
}

/// A count that must be at least 1: 0 would do nothing, and is refused
/// rather than raised silently.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("0 would do nothing: give 1 or more".to_owned()),
        Ok(n) if n > MAX_COUNT => Err(format!(
            "{n} is more than this receiver can use: give at most {MAX_COUNT}"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// The largest count a flag takes (connections, concurrency, requests,
/// rows listed): past it, a number is a mistake, not a setting.
pub const MAX_COUNT: usize = 1_000_000;

/// A number of attempts: at least 1.
pub fn parse_attempts(s: &str) -> Result<u32, String> {
    let n = parse_count(s)?;
    u32::try_from(n).map_err(|_| format!("{s:?} is too large"))
}

/// A timeout: longer than 0 (a timeout of 0 would time every request out
/// while its webhook is still stored and handled).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{s:?}: a timeout of 0 would cut off every request: give more than 0"
        ));
    }
    Ok(d)
}

/// A --client-ip-source name, in any letter case.
pub fn parse_client_ip_source(s: &str) -> Result<ClientIpSource, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// `30d`, `12h`, `90m`, `10s`, `500ms` (or a bare number of seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and d, h, m, s or ms"))?;
    let millis = match unit.trim() {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" | "" => 1_000,
        "ms" => 1,
        _ => return Err(format!("{s:?}: the unit is d, h, m, s or ms")),
    };
    n.checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `25MiB`, `512KiB`, `1GiB`, `2MB`, `64kB` (or a bare number of bytes).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and B, KiB, MiB, GiB, kB, MB or GB"))?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    n.checked_mul(unit)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?}: out of range"))
}

/// The relay's flags (a part of [`Args`]). The secrets are
/// not flags: `CMC_RELAY_SECRET` or `--relay-secret-file`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// POSTs each stored event and mail to URL (https://), signed as
    /// Standard Webhooks specifies, instead of printing it: 2xx marks it
    /// done, anything else is retried with backoff, then dead. The signing
    /// secrets (whsec_...) come from CMC_RELAY_SECRET (several separated by
    /// commas or spaces, for rotation) or --relay-secret-file, never from
    /// a flag.
    #[arg(long, value_name = "URL", env = "CMC_RELAY", hide_env_values = true)]
    pub relay: Option<String>,

    /// A file of relay signing secrets, one per line (whsec_ and base64).
    #[arg(long, value_name = "PATH", env = "CMC_RELAY_SECRET_FILE")]
    pub relay_secret_file: Option<PathBuf>,

    /// The longest one relay attempt may take (connecting, sending, the
    /// answer's status): past it the attempt failed and is retried.
    #[arg(long, value_name = "TIME", env = "CMC_RELAY_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub relay_timeout: Duration,

    /// The CA certificates (PEM) the relay target's certificate must chain
    /// to, instead of the system's.
    #[arg(long, value_name = "PATH", env = "CMC_RELAY_CA_FILE")]
    pub relay_ca_file: Option<PathBuf>,

    /// Allows an http:// relay URL (an internal target): the webhooks then
    /// travel in clear text.
    #[arg(long, env = "CMC_RELAY_ALLOW_HTTP", value_parser = clap::builder::BoolishValueParser::new())]
    pub relay_allow_http: bool,

    /// The most attachment bytes (all of a mail's together) relayed inline,
    /// as base64 in the JSON; a mail with more is sent as
    /// multipart/form-data (the JSON first, then one part per attachment).
    #[arg(long, value_name = "SIZE", env = "CMC_RELAY_INLINE_LIMIT", default_value = "1MiB", value_parser = parse_size)]
    pub relay_inline_limit: usize,

    /// Failed relay attempts in a row before the target is paused for
    /// --relay-pause (its attempts wait meanwhile; the first success
    /// resumes it). 0: never paused.
    #[arg(
        long,
        value_name = "N",
        env = "CMC_RELAY_FAILURE_CAP",
        default_value = "10"
    )]
    pub relay_failure_cap: u32,

    /// Relays the mails routed to the mailbox NAME (--mailbox) to URL
    /// instead of --relay's, signed with the same secrets. Repeatable;
    /// needs --relay. (In the environment: separated by semicolons.)
    #[arg(
        long,
        value_name = "NAME=URL",
        env = "CMC_MAILBOX_RELAY",
        value_delimiter = ';'
    )]
    pub mailbox_relay: Vec<String>,

    /// How long a failing relay target is paused (at most 2 minutes).
    #[arg(long, value_name = "TIME", env = "CMC_RELAY_PAUSE", default_value = "30s", value_parser = parse_timeout)]
    pub relay_pause: Duration,
}

impl RelayArgs {
    /// The relay of each `--mailbox-relay NAME=URL`: `base` (the options
    /// of --relay) with the mailbox's URL.
    pub fn mailbox_relays(
        &self,
        base: &crate::relay::RelayOptions,
    ) -> Result<Vec<(String, crate::relay::RelayOptions)>, String> {
        let mut out: Vec<(String, crate::relay::RelayOptions)> = Vec::new();
        for flag in &self.mailbox_relay {
            let (name, url) = flag
                .split_once('=')
                .ok_or_else(|| format!("--mailbox-relay {flag:?}: expected NAME=URL"))?;
            let name = name.trim();
            if out.iter().any(|(n, _)| n == name) {
                return Err(format!("--mailbox-relay: {name} is given twice"));
            }
            let mut options = base.clone();
            options.url = crate::relay::target(url.trim(), self.relay_allow_http)
                .map_err(|e| format!("--mailbox-relay {name}: {e}"))?;
            out.push((name.to_owned(), options));
        }
        Ok(out)
    }

    /// The relay's options, `None` without `--relay`. The secrets come from
    /// `env("CMC_RELAY_SECRET")` or the secret file; every error names
    /// what is wrong and never shows a secret.
    pub fn options(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<crate::relay::RelayOptions>, String> {
        let from_env = env("CMC_RELAY_SECRET");
        let Some(url) = &self.relay else {
            if self.relay_secret_file.is_some() {
                return Err("--relay-secret-file is given without --relay".to_owned());
            }
            if !self.mailbox_relay.is_empty() {
                return Err("--mailbox-relay is given without --relay".to_owned());
            }
            return Ok(None);
        };
        let url = crate::relay::target(url, self.relay_allow_http)?;
        let secrets = match (from_env, &self.relay_secret_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "give the relay's secrets in CMC_RELAY_SECRET or --relay-secret-file, not both"
                        .to_owned(),
                );
            }
            (Some(list), None) => {
                let list = list
                    .into_string()
                    .map_err(|_| "CMC_RELAY_SECRET is not valid UTF-8".to_owned())?;
                crate::relay::sign::Signer::parse_list(&list)
                    .map_err(|e| format!("CMC_RELAY_SECRET: {e}"))?
            }
            (None, Some(path)) => read_secrets("--relay-secret-file", path)?
                .iter()
                .map(|s| {
                    s.parse::<crate::relay::sign::SigningSecret>()
                        .map_err(|e| format!("--relay-secret-file {}: {e}", path.display()))
                })
                .collect::<Result<_, _>>()?,
            (None, None) => Vec::new(),
        };
        let mut options = crate::relay::RelayOptions::new(url, secrets);
        options.timeout = self.relay_timeout;
        options.ca_file = self.relay_ca_file.clone();
        options.allow_http = self.relay_allow_http;
        options.inline_limit = self.relay_inline_limit;
        if self.relay_pause > crate::relay::MAX_PAUSE {
            return Err("--relay-pause: at most 2 minutes (attempts wait through it)".to_owned());
        }
        options.failure_cap = self.relay_failure_cap;
        options.pause = self.relay_pause;
        Ok(Some(options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(parse_size("25MiB"), Ok(25 << 20));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_basic("cmc").is_err());
        assert_eq!(parse_basic("cmc:p:w").unwrap().password, "p:w");
    }

    #[test]
    fn the_flags_default_body_limit_is_the_options_default() {
        let args = Args::try_parse_from(["cmc-receiver"]).unwrap();
        assert_eq!(args.body_limit, crate::app::DEFAULT_BODY_LIMIT);
        assert_eq!(
            crate::app::Options::default().body_limit,
            crate::app::DEFAULT_BODY_LIMIT
        );
    }
}
