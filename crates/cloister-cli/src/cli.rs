//! Command-line grammar.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default address of a development platform.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8787";
/// Default data directory of a development platform.
pub const DEFAULT_DATA_DIR: &str = cloister_role::flags::DEFAULT_DATA_DIR;

/// Cloister: confidential functions.
#[derive(Debug, Parser)]
#[command(name = "cloister", version, about)]
pub struct Cli {
    /// Server URL [default: the profile's, else http://127.0.0.1:8787].
    #[arg(long, global = true, env = "CLOISTER_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Credentials profile: a name `cloister login URL --profile NAME` recorded for a URL.
    #[arg(long, global = true, env = "CLOISTER_PROFILE", hide_env_values = true)]
    pub profile: Option<String>,
    /// API token [default: the one recorded for the URL in ~/.config/cloister/credentials.json
    /// by `cloister login` or `serve --dev`].
    #[arg(long, global = true, env = "CLOISTER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Identity file that signs deploys and secret writes [default: the one recorded for the
    /// URL, else ~/.config/cloister/identity.json].
    #[arg(long, global = true, env = "CLOISTER_IDENTITY", hide_env_values = true)]
    pub identity: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Server coordinates for client commands.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Server URL.
    pub url: String,
    /// The token for the URL, if one was given or recorded.
    pub token: Option<String>,
    /// The identity file for the URL, if one was given or recorded.
    pub identity: Option<PathBuf>,
}

/// Default async worker threads of a server role: half the CPUs, at least one. Each role
/// shares the machine with the other role and with the function workers, and on small
/// machines one event-loop thread per role avoids cross-thread wake-ups on every request.
pub fn default_threads() -> usize {
    cloister_role::listen::default_threads()
}

impl Cli {
    /// Async worker threads this command's runtime should use.
    pub fn runtime_threads(&self) -> usize {
        let t = match &self.command {
            Command::Gateway(a) => a.role.threads,
            Command::Serve(a) => a.threads,
            _ => None,
        };
        t.unwrap_or_else(default_threads).max(1)
    }

    /// The client connection settings: the URL (flag, else profile, else default) and the
    /// token and identity for it (flags, else the credentials recorded for that URL).
    pub fn connection(&self) -> anyhow::Result<Conn> {
        let url = crate::credentials::resolve_url(self.url.as_deref(), self.profile.as_deref())?;
        let token = crate::credentials::resolve_token(self.token.clone(), &url)?;
        let identity = match &self.identity {
            Some(p) => Some(p.clone()),
            None => crate::credentials::for_url(&url)?.and_then(|c| c.identity),
        };
        Ok(Conn {
            url,
            token,
            identity,
        })
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform on this machine: keyvault and the executor from their own
    /// executables next to this one (cloister-keyvaultd, cloister-executord), and the gateway.
    Serve(ServeArgs),
    /// Run only the gateway role (normally started by `serve`). The trusted roles are their
    /// own executables: `cloister-keyvaultd --help`, `cloister-executord --help`.
    Gateway(GatewayArgs),
    /// Deploy, inspect, delete and invoke functions.
    #[command(subcommand)]
    Fn(FnCommand),
    /// Manage API tokens (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Benchmark a running server with the reference workloads.
    Bench(BenchArgs),
    /// Verify or decode TEE attestation evidence (Nitro, SEV-SNP, SGX, TDX); works offline.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Migrate keyvault's sealed state, rotate its master key, back it up, set its policy.
    #[command(subcommand)]
    Keyvault(KeyvaultCommand),
    /// Store, rotate, list and delete secrets; values are sealed here to keyvault's attested
    /// key, so the gateway only ever forwards ciphertext.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Keys keyvault keeps for a function and signs with (`context.sign`); their private
    /// halves never leave keyvault.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Read and verify the tamper-evident audit log (admin).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Signing identities: create one, show it, grant one a role (admin).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// What this client accepts from the server at --url before sealing anything: platform
    /// roots, keyvault and executor builds, maximum bundle age.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Check invocation receipts offline (saved by `fn invoke --receipt FILE`).
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Record a token (and optionally an identity and a profile name) for a server, so
    /// commands against that URL use it from any directory.
    #[command(after_help = "Examples:\n  \
        cloister login https://cloister.example.com --profile prod   # prompts for the token\n  \
        echo \"$TOKEN\" | cloister login http://127.0.0.1:8787\n  \
        cloister --profile prod fn list")]
    Login(LoginArgs),
    /// Forget the credentials recorded for a server (default: --url / the profile's).
    Logout {
        /// Server URL.
        url: Option<String>,
    },
    /// List the servers and profiles credentials are recorded for (never the tokens).
    Servers,
    /// The platform at --url: the gateway's health and release, the executor it reports,
    /// and keyvault's attestation verified here (TEE, measurements, fleet keys, evidence age).
    #[command(after_help = "Examples:\n  cloister status\n  cloister --json status")]
    Status {
        /// How keyvault's attestation bundle is checked.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        cloister completions bash > ~/.local/share/bash-completion/completions/cloister\n  \
        cloister completions zsh > \"${fpath[1]}/_cloister\"\n  \
        cloister completions fish > ~/.config/fish/completions/cloister.fish")]
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

/// `cloister login URL`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server URL.
    pub url: String,
    /// Record the token without checking it against the server.
    #[arg(long)]
    pub no_check: bool,
}

/// `cloister trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Show the settings for --url.
    Show,
    /// Accept a root or build.
    #[command(subcommand)]
    Add(TrustList),
    /// Stop accepting a root or build.
    #[command(subcommand)]
    Remove(TrustList),
    /// Refuse keyvault evidence older than SECONDS (default 300).
    MaxAge {
        /// Seconds.
        seconds: u64,
    },
    /// Forget the trust settings for --url (roots, builds, maximum age).
    Reset,
    /// Every server this machine pinned something for: its sim root, trust settings,
    /// keyvault instance and the functions whose owners or confidentiality it remembers.
    List,
    /// Forget everything pinned for --url (or URL): sim root, trust settings, keyvault
    /// instance, function pins. For a platform re-created on purpose; the next use pins again.
    #[command(after_help = "Example:\n  cloister trust forget http://127.0.0.1:8787")]
    Forget {
        /// Server URL (default: --url).
        url: Option<String>,
    },
}

/// One list of `cloister trust`.
#[derive(Debug, Subcommand)]
pub enum TrustList {
    /// A platform root, by SHA-256 fingerprint (`serve --dev` prints the sim root's).
    Root {
        /// 64 hex digits.
        value: String,
    },
    /// A keyvault build, by measurement (`cloister attest measure --role keyvault`).
    Keyvault {
        /// 96 hex digits.
        value: String,
    },
    /// An executor build allowed to read sealed inputs; once any is listed, a bundle whose
    /// executor allowlist names another build is refused.
    Executor {
        /// 96 hex digits.
        value: String,
    },
}

/// `cloister receipt ...`.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify a saved receipt offline: its bundle against the pinned root and keyvault
    /// build, the signer's evidence at the receipt's time, the executor build against the
    /// bundle, the signature. Exit 0 when valid; non-zero with the reason otherwise.
    Verify {
        /// The file `fn invoke --receipt` wrote.
        file: PathBuf,
        /// How the bundle inside is checked (the root pinned for the file's URL by default).
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// `cloister identity ...`.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create a signing key pair (Ed25519) in a 0600 file; prints its public key for an admin.
    Create {
        /// Where to write it (default: ~/.config/cloister/identity.json).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Human label (default: user@host).
        #[arg(long)]
        label: Option<String>,
        /// Seal the private key under a passphrase (Argon2id + AES-256-GCM), read from
        /// CLOISTER_IDENTITY_PASSPHRASE(_FILE) or asked on the terminal.
        #[arg(long)]
        passphrase: bool,
    },
    /// Show the id and public key of the identity in use.
    Show,
    /// List keyvault's identity registry, checked against the digest its evidence binds.
    List {
        /// Trust settings for keyvault's attestation.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Add an identity to keyvault's registry, signed by your admin identity.
    Grant {
        /// The identity's public key (hex), as `identity create` printed it.
        #[arg(long)]
        public_key: String,
        /// `developer` (creates functions, acts on those it owns), `machine` (a pipeline: acts
        /// only on functions an owner adds it to) or `admin`.
        #[arg(long, default_value = "developer")]
        role: String,
        /// Label recorded in the registry and the audit log.
        #[arg(long, default_value = "")]
        label: String,
        /// The grant expires after this long (`90d`, `12h`, `30m`, `600s`); advised for
        /// machine identities.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Replace your key: a new key pair takes the identity's role and ownerships, signed by
    /// the old key; the old file is kept as `<file>.retired`.
    Rotate {
        /// Protect the new file with a passphrase.
        #[arg(long)]
        passphrase: bool,
    },
    /// Sign a request body for another HTTP client (curl, a test tool): the body's JSON on
    /// stdin, with the field names docs/MANIFESTS.md gives for DOMAIN; prints the base64 that
    /// goes in the request's `signed` (or `manifest`) field or `cloister-signed` header.
    Sign {
        /// `cloister/deploy/v1`, `cloister/secret-write/v1`, `cloister/activate/v1`,
        /// `cloister/identity-grant/v1`, `cloister/registry-change/v1`, `cloister/key-write/v1`,
        /// `cloister/key-use/v1` or `cloister/key-export/v1`.
        domain: String,
        /// The signature is bound to the keyvault whose attestation this verifies.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Revoke an identity (admin, or your own). Manifests it signed keep working unless
    /// `--compromised`, which refuses secrets to every version it signed, for good.
    Revoke {
        /// Identity id (32 hex digits).
        identity_id: String,
        /// The key leaked: distrust what it signed, not only what it will sign.
        #[arg(long)]
        compromised: bool,
    },
}

/// `cloister keyvault ...`.
#[derive(Debug, Subcommand)]
pub enum KeyvaultCommand {
    /// Re-seal keyvault's root key to the keyvault executable next to this CLI (or in
    /// --trusted-dir) using the recovery key printed at initialisation. Run it with the
    /// platform stopped, after an upgrade.
    Migrate(MigrateArgs),
    /// Rotate the master key: a new MEK re-wraps every data key (admin).
    RotateMek,
    /// Write a consistent copy of the platform's database (safe while it runs). It holds
    /// only ciphertext and MACed rows: useless without this platform's sealing or the
    /// recovery key.
    Backup(BackupArgs),
    /// Put a backup back (platform stopped): signed by your admin identity, it starts a new
    /// anti-rollback epoch so keyvault accepts the older state; audited.
    Restore(RestoreArgs),
    /// The attestation policy executors must satisfy to receive secrets (a registry entry).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `cloister keyvault policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the executor policy in force, checked against keyvault's evidence.
    Show {
        /// Trust settings for keyvault's attestation.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Replace it (admin-signed): a YAML policy like `cloister attest verify --policy` takes,
    /// listing `allowed_measurements`. Executors no longer listed stop receiving secrets at
    /// once.
    Set {
        /// The policy file (YAML).
        file: PathBuf,
        /// Trust settings for keyvault's attestation.
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// `cloister keyvault backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory holding the database and the sim platform.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where to write the copy (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// `cloister keyvault restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Directory holding the database and the sim platform.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The backup to restore (made by `cloister keyvault backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// Directory of the trusted executables (default: next to this CLI).
    #[arg(long, env = cloister_role::trusted::DIR_ENV, hide_env_values = true)]
    pub trusted_dir: Option<PathBuf>,
}

/// `cloister keyvault migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Directory holding the database and the sim platform.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// File holding the recovery key (default: read it from stdin).
    #[arg(long)]
    pub recovery_key_file: Option<PathBuf>,
    /// Directory of the trusted executables (default: next to this CLI).
    #[arg(long, env = cloister_role::trusted::DIR_ENV, hide_env_values = true)]
    pub trusted_dir: Option<PathBuf>,
}

/// How the CLI decides to trust keyvault's attestation bundle.
#[derive(Debug, Args, Clone, Default)]
pub struct TrustArgs {
    /// SHA-256 fingerprint of the sim platform root to trust (printed by `serve --dev`).
    /// Without it, the root seen first for this URL is pinned in the CLI config (trust on
    /// first use) and a different one is refused later.
    #[arg(long, env = "CLOISTER_SIM_ROOT", hide_env_values = true)]
    pub sim_root: Option<String>,
    /// keyvault measurement to expect (hex; default: that of the cloister-keyvaultd next to
    /// this CLI, or in --trusted-dir).
    #[arg(long, env = "CLOISTER_KEYVAULT_MEASUREMENT", hide_env_values = true)]
    pub keyvault_measurement: Option<String>,
    /// Directory of the trusted executables whose keyvault measurement is expected.
    #[arg(long, env = cloister_role::trusted::DIR_ENV, hide_env_values = true)]
    pub trusted_dir: Option<PathBuf>,
}

/// `cloister key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Have keyvault generate a key in a function's namespace (owner-signed).
    Create {
        /// The key's name (what `--key` and `context.sign` use).
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// ed25519, ecdsa-p256, ecdsa-secp256k1 or hmac-sha256.
        #[arg(long, default_value = "ed25519")]
        algorithm: String,
        /// Allow the key to leave keyvault later, sealed to a recipient by an owner- and
        /// admin-signed export (fixed for the key's life; without it the key never leaves).
        #[arg(long)]
        exportable: bool,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Bring in a key made elsewhere (owner-signed): its 32 secret bytes (hex, from a file or
    /// `-` for stdin) are sealed to the attested keyvault before they leave this machine.
    Import {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// ed25519 (seed), ecdsa-p256 or ecdsa-secp256k1 (scalar), hmac-sha256 (key).
        #[arg(long)]
        algorithm: String,
        /// File holding the 32 secret bytes as hex (`-`: stdin).
        #[arg(long)]
        secret_file: PathBuf,
        /// As for `key create`.
        #[arg(long)]
        exportable: bool,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Export an exportable key sealed to a recipient's X25519 key: signed by you (an owner)
    /// and by an admin (--admin-signed). Without --admin-signed, prints the body the admin
    /// signs (`cloister identity sign cloister/key-export/v1`).
    Export {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// The recipient's HPKE X25519 public key, hex.
        #[arg(long)]
        recipient: String,
        /// Export this version (default: the newest).
        #[arg(long)]
        version: Option<u64>,
        /// The admin's signature over the same body (base64, or @FILE).
        #[arg(long)]
        admin_signed: Option<String>,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Give a key a new version (same algorithm); the newest version signs.
    Rotate {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// A function's keys: name, algorithm, newest version, public key (each checked against
    /// keyvault's signature).
    List {
        /// The function.
        #[arg(long)]
        function: String,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Let another function use a key (owner-signed): its manifest then declares it as
    /// FUNCTION/NAME (`fn deploy --key payments/signer`).
    Grant {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// The function that may use it.
        #[arg(long)]
        to: String,
        /// A limit on its use, enforced on top of the other function's own (repeatable; as
        /// `fn deploy --key-limit`: `ops=…`, `hashes=…`, `max-bytes=N`, `rate=N/min`,
        /// `prefix=TEXT`).
        #[arg(long = "limit", value_name = "SETTING")]
        limits: Vec<String>,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Withdraw a grant (owner-signed): the other function's next use is refused.
    Revoke {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// The function that may no longer use it.
        #[arg(long)]
        to: String,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Sign a message with a key, as its owner (owner-signed; keyvault signs with the newest
    /// version unless --version is given). Prints the signature in hex.
    Sign {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// The message.
        #[command(flatten)]
        message: MessageArgs,
        /// ECDSA: sha256, keccak256, or prehashed (the message is the 32-byte digest).
        #[arg(long, default_value = "sha256")]
        hash: String,
        /// Sign with this (older) version.
        #[arg(long)]
        version: Option<u64>,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Check a signature with a key (owner-signed; keyvault tries --version, or every
    /// version newest first). Exits 1 if it does not verify.
    Verify {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// The signature, hex (as `key sign` and `context.sign` make it).
        #[arg(long)]
        signature: String,
        /// The message.
        #[command(flatten)]
        message: MessageArgs,
        /// ECDSA: sha256, keccak256 or prehashed.
        #[arg(long, default_value = "sha256")]
        hash: String,
        /// Check against this version only.
        #[arg(long)]
        version: Option<u64>,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// One key's public key (hex), for verifiers (checked against keyvault's signature).
    Public {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// An older version's public key, for signatures made before a rotation (default:
        /// the newest).
        #[arg(long)]
        version: Option<u64>,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Every version of a key and its public key, oldest first (each checked against
    /// keyvault's signature).
    Versions {
        /// The key's name.
        name: String,
        /// The function whose namespace holds it.
        #[arg(long)]
        function: String,
        /// How the keyvault bundle is trusted.
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// Where a message to sign or check comes from (one of them).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct MessageArgs {
    /// The message as text (signed as its UTF-8 bytes).
    #[arg(long)]
    pub message: Option<String>,
    /// The message as hex.
    #[arg(long)]
    pub message_hex: Option<String>,
    /// The message from a file (`-`: stdin).
    #[arg(long)]
    pub message_file: Option<PathBuf>,
}

/// `cloister secret ...`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a value as a new version of a secret (creates the secret if needed).
    Put(SecretPutArgs),
    /// Store a new version of an existing secret (`POST …:rotate`).
    Rotate(SecretPutArgs),
    /// Seal and sign a value as `secret put` does, without sending it: prints the JSON body
    /// of `PUT /v1/secrets/{path}` (with --rotate, of `POST …:rotate`) for another client.
    Seal {
        /// What to seal, for which path.
        #[command(flatten)]
        args: SecretPutArgs,
        /// Sign it as a rotation (`POST /v1/secrets/{path}:rotate`).
        #[arg(long)]
        rotate: bool,
    },
    /// List secrets (metadata only), of one function or all.
    List {
        /// Only this function's secrets.
        #[arg(long)]
        function: Option<String>,
    },
    /// Delete a secret and every version of it.
    Delete {
        /// Full path, or NAME / CATEGORY/NAME with --function.
        path: String,
        /// Function owning the secret (resolves a short name).
        #[arg(long)]
        function: Option<String>,
        /// Environment for a short name (default: the function's).
        #[arg(long)]
        environment: Option<String>,
    },
    /// List the kept versions of a secret.
    Versions {
        /// Full path, or NAME / CATEGORY/NAME with --function.
        path: String,
        /// Function owning the secret (resolves a short name).
        #[arg(long)]
        function: Option<String>,
        /// Environment for a short name (default: the function's).
        #[arg(long)]
        environment: Option<String>,
    },
    /// Rotate a function's data key: its values are re-encrypted under a new DEK (admin).
    RotateDek {
        /// Function name.
        #[arg(long)]
        function: String,
    },
}

/// `cloister secret put|rotate`.
#[derive(Debug, Args)]
pub struct SecretPutArgs {
    /// Full path `function-<id>/<environment>/<category>/<name>`, or NAME / CATEGORY/NAME
    /// together with --function.
    pub path: String,
    /// Function owning the secret (resolves a short name to the full path).
    #[arg(long)]
    pub function: Option<String>,
    /// Environment for a short name (default: the function's).
    #[arg(long)]
    pub environment: Option<String>,
    /// Read the value from this file. Without this or --from-stdin, on a terminal the value
    /// is typed at a hidden prompt (twice).
    #[arg(long, conflicts_with = "from_stdin")]
    pub value_file: Option<PathBuf>,
    /// Read the value from standard input.
    #[arg(long)]
    pub from_stdin: bool,
    /// Keep a trailing newline (by default one trailing `\n` or `\r\n` is removed).
    #[arg(long)]
    pub keep_newline: bool,
    /// Trust settings for keyvault's attestation.
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `cloister audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit entries in order.
    List {
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Verify the hash chain and keyvault's signed checkpoints, here and in keyvault.
    /// Exit 0: intact; 1: tampering found (the first bad sequence number is printed).
    Verify {
        /// Trust settings for keyvault's attestation (its audit key comes from the bundle).
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// `cloister attest ...`.
#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Check evidence is authentic (signatures, chain to a pinned vendor root, validity,
    /// collateral) and optionally apply a policy. Exit 0: accepted; 1: not authentic or
    /// unreadable; 2: authentic but rejected by the policy.
    Verify(Box<AttestVerifyArgs>),
    /// Decode evidence without verifying anything (output is labelled NOT VERIFIED).
    Inspect(AttestInspectArgs),
    /// List the embedded vendor roots and their SHA-256 fingerprints.
    Roots,
    /// Print the sim measurements of the trusted executables (what allowlists hold), as
    /// `serve --dev` runs them.
    Measure {
        /// Only this role's measurement (printed alone, for scripts).
        #[arg(long, value_parser = ["executor", "keyvault"])]
        role: Option<String>,
        /// Directory of the trusted executables (default: next to this CLI).
        #[arg(long, env = cloister_role::trusted::DIR_ENV, hide_env_values = true)]
        trusted_dir: Option<PathBuf>,
        /// The worker uids the executor is configured with (part of its measurement).
        #[command(flatten)]
        workers: WorkerUidArgs,
    },
}

/// `cloister attest verify`.
#[derive(Debug, Args)]
pub struct AttestVerifyArgs {
    /// Evidence file: raw binary, base64 or hex text (detected automatically).
    pub file: PathBuf,
    /// Evidence format.
    #[arg(long, default_value = "auto", value_parser = ["auto", "nitro", "sev-snp", "sgx", "tdx", "sim"])]
    pub format: String,
    /// SEV-SNP: the VCEK or VLEK (DER or PEM); ASK/ARK may be included and must be the embedded ones.
    #[arg(long = "cert")]
    pub certs: Vec<PathBuf>,
    /// CRL (DER or PEM) to check the chain against, e.g. AMD's ARK/ASK CRL; repeatable.
    #[arg(long = "crl")]
    pub crls: Vec<PathBuf>,
    /// DCAP: collateral JSON (pck_crl_issuer_chain, root_ca_crl, pck_crl, tcb_info, ...).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Policy YAML; when given, its verdict decides the exit code too.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Verification time (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Extra trust anchor as TEE=FILE (e.g. nitro=root.pem; sev-snp=ark_and_ask.pem); repeatable.
    #[arg(long = "extra-root")]
    pub extra_roots: Vec<String>,
    /// SHA-256 fingerprint of the sim platform root to trust for simulated-TEE evidence
    /// (printed by `serve --dev`); sim evidence is refused without it.
    #[arg(long, env = "CLOISTER_SIM_ROOT", hide_env_values = true)]
    pub sim_root: Option<String>,
    #[command(flatten)]
    pub online: OnlineArgs,
}

/// Online collateral fetching for `attest verify` (off unless `--online`).
#[derive(Debug, Args)]
pub struct OnlineArgs {
    /// Fetch missing collateral from AMD KDS / Intel PCS (SEV-SNP: VCEK + CRL; DCAP: TCB info,
    /// QE identity, CRLs). Fetched items are verified exactly like files on disk.
    #[arg(long)]
    pub online: bool,
    /// AMD Key Distribution Service base URL.
    #[arg(
        long,
        env = "CLOISTER_AMD_KDS_URL",
        hide_env_values = true,
        default_value = "https://kdsintf.amd.com"
    )]
    pub kds_url: String,
    /// Intel PCS (or PCCS, v4 API) base URL.
    #[arg(
        long,
        env = "CLOISTER_INTEL_PCS_URL",
        hide_env_values = true,
        default_value = "https://api.trustedservices.intel.com"
    )]
    pub pcs_url: String,
    /// Intel SGX Root CA CRL URL.
    #[arg(
        long,
        env = "CLOISTER_INTEL_ROOT_CRL_URL",
        hide_env_values = true,
        default_value = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    )]
    pub intel_root_crl_url: String,
    /// Directory caching fetched collateral (default: $XDG_CACHE_HOME/cloister/collateral,
    /// else ~/.cache/cloister/collateral).
    #[arg(long, env = "CLOISTER_COLLATERAL_CACHE", hide_env_values = true)]
    pub collateral_cache: Option<PathBuf>,
    /// Do not read or write the collateral cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Seconds a cached CRL / TCB info / QE identity is reused (VCEKs are cached for good).
    #[arg(long, default_value_t = 21600)]
    pub cache_max_age: i64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    pub fetch_timeout: u64,
}

/// `cloister attest inspect`.
#[derive(Debug, Args)]
pub struct AttestInspectArgs {
    /// Evidence file: raw binary, base64 or hex text.
    pub file: PathBuf,
    /// Evidence format.
    #[arg(long, default_value = "auto", value_parser = ["auto", "nitro", "sev-snp", "sgx", "tdx", "sim"])]
    pub format: String,
}

/// `cloister serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Development mode: embedded SQLite, simulated TEE (clearly labelled, not confidential).
    #[arg(long)]
    pub dev: bool,
    /// Log output.
    #[command(flatten)]
    pub log: LogArgs,
    /// Directory for the database and the admin token.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Run on PostgreSQL instead of the embedded SQLite files:
    /// postgres://USER@HOST:PORT/DB[?schema=NAME]. The gateway's tables go in schema
    /// NAME_gateway and keyvault's in NAME_keyvault (NAME defaults to `cloister`).
    #[arg(
        long,
        value_name = "URL",
        env = "CLOISTER_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<cloister_db::DatabaseUrl>,
    /// Address of the public HTTP API.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Async worker threads of each role (default: half the CPUs, at least 1; the rest is
    /// left to function workers).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Limits at the door of the public API.
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Worker uids.
    #[command(flatten)]
    pub workers: WorkerUidArgs,
    /// Directory of the trusted executables (default: the directory of this `cloister`).
    #[arg(long, env = cloister_role::trusted::DIR_ENV, hide_env_values = true)]
    pub trusted_dir: Option<PathBuf>,
}

/// How a server role gets its socket and threads (shared by `gateway` and `executor`).
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Address to listen on (the executor's must stay private: only gateways may reach it).
    #[arg(
        long,
        conflicts_with = "listen_fd",
        required_unless_present = "listen_fd"
    )]
    pub listen: Option<SocketAddr>,
    /// Inherited listening socket (used by `serve`).
    #[arg(long, hide = true)]
    pub listen_fd: Option<i32>,
    /// Internal credentials: a mode-0600 file of `name=value` lines (see docs/SECRETS.md).
    #[arg(long, conflicts_with = "credentials_fd")]
    pub credentials_file: Option<PathBuf>,
    /// Inherited descriptor holding the internal credentials (used by `serve`).
    #[arg(long, hide = true)]
    pub credentials_fd: Option<i32>,
    /// Async worker threads (default: half the CPUs, at least 1).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `cloister gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Socket and threads.
    #[command(flatten)]
    pub role: RoleArgs,
    /// Log output.
    #[command(flatten)]
    pub log: LogArgs,
    /// Directory holding the SQLite database.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The gateway's store: sqlite:PATH (default: gateway.db in --data-dir) or
    /// postgres://USER@HOST:PORT/DB[?schema=NAME&sslmode=require] (shared by every gateway).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<cloister_db::DatabaseUrl>,
    /// Executor RPC URL, e.g. http://127.0.0.1:8788.
    #[arg(long)]
    pub executor_url: String,
    /// Create `<data-dir>/admin.token` on first start.
    #[arg(long)]
    pub bootstrap_admin_token: bool,
    /// keyvault RPC URL (without it, secrets and attestation answer `unavailable`).
    #[arg(long)]
    pub keyvault_url: Option<String>,
    /// Require the executor to prove itself: SHA-256 fingerprint of the sim platform root its
    /// evidence must chain to (its measurement must be on keyvault's executor policy).
    #[arg(long)]
    pub executor_sim_root: Option<String>,
    /// Limits at the door of the public API.
    #[command(flatten)]
    pub edge: EdgeArgs,
}

/// Limits at the door of the public API (rates are per second; 0 turns a limit off).
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Requests per second from one source address (IPv6: one /64); bursts of twice that.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub rate_limit_per_address: u32,
    /// Requests per second with one bearer token; bursts of twice that.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub rate_limit_per_token: u32,
    /// Failed authentications per minute from one source address (bursts of half that);
    /// once spent, the address gets 429 until the budget refills.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub auth_failures_per_minute: u32,
    /// Most open connections in total.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub max_connections: usize,
    /// Most open connections from one source address.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections_per_address: usize,
    /// Milliseconds a client has to send a request's headers (also the keep-alive idle limit).
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    pub header_timeout_ms: u64,
    /// Milliseconds a client has to send a request's body once its headers arrived.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub body_timeout_ms: u64,
}

impl EdgeArgs {
    /// The gateway's configuration for these flags.
    pub fn config(&self) -> cloister_gateway::listener::EdgeConfig {
        use std::num::NonZeroU32;
        use std::time::Duration;

        use cloister_gateway::ratelimit::{Rate, RateConfig};
        let per_second =
            |n: u32| NonZeroU32::new(n).map(|n| Rate::per_second(n, n.saturating_add(n.get())));
        let failures = NonZeroU32::new(self.auth_failures_per_minute)
            .map(|n| Rate::per_minute(n, NonZeroU32::new(n.get() / 2).unwrap_or(NonZeroU32::MIN)));
        cloister_gateway::listener::EdgeConfig {
            rate: RateConfig {
                per_address: per_second(self.rate_limit_per_address),
                per_token: per_second(self.rate_limit_per_token),
                auth_failures: failures,
            },
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
        }
    }

    /// The same flags as arguments (serve passes them on to its gateway).
    pub fn to_args(&self) -> Vec<String> {
        [
            (
                "--rate-limit-per-address",
                self.rate_limit_per_address.to_string(),
            ),
            (
                "--rate-limit-per-token",
                self.rate_limit_per_token.to_string(),
            ),
            (
                "--auth-failures-per-minute",
                self.auth_failures_per_minute.to_string(),
            ),
            ("--max-connections", self.max_connections.to_string()),
            (
                "--max-connections-per-address",
                self.max_connections_per_address.to_string(),
            ),
            ("--header-timeout-ms", self.header_timeout_ms.to_string()),
            ("--body-timeout-ms", self.body_timeout_ms.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }
}

/// The unprivileged uids workers switch to when the executor runs as root (each also the
/// worker's gid; no two live workers share one). Choose a range no account or other executor
/// on the host uses, and inside the uid map when the executor runs in a user namespace.
#[derive(Debug, Clone, Args)]
pub struct WorkerUidArgs {
    /// First worker uid.
    #[arg(long, default_value_t = cloister_executor::config::DEFAULT_WORKER_UID_BASE, value_name = "UID")]
    pub worker_uid_base: u32,
    /// How many uids, from the first (at least the most live workers, 256).
    #[arg(long, default_value_t = cloister_executor::config::DEFAULT_WORKER_UID_COUNT, value_name = "N")]
    pub worker_uid_count: u32,
}

impl WorkerUidArgs {
    /// The uid range, refusing one that includes 0 or overflows.
    pub fn range(&self) -> anyhow::Result<std::ops::Range<u32>> {
        match cloister_executor::config::worker_uid_range(
            self.worker_uid_base,
            self.worker_uid_count,
        ) {
            Some(range) => Ok(range),
            None => anyhow::bail!(
                "--worker-uid-base must be above 0 and base + count must fit in 32 bits"
            ),
        }
    }

    /// The same flags as arguments (serve passes them on to its executor).
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--worker-uid-base".to_owned(),
            self.worker_uid_base.to_string(),
            "--worker-uid-count".to_owned(),
            self.worker_uid_count.to_string(),
        ]
    }
}

/// `cloister fn ...`.
#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// Deploy a new version of a function from a source file.
    Deploy(DeployArgs),
    /// List functions (latest versions).
    List,
    /// Show one function version.
    Show {
        /// Function name.
        name: String,
        /// Version (default latest).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete a function and all its versions. While it has secrets, say what becomes of
    /// them: --delete-secrets or --keep-secrets.
    #[command(after_help = "Examples:\n  \
        cloister fn delete hello --delete-secrets   # its secrets go too (each delete owner-signed)\n  \
        cloister fn delete hello --keep-secrets     # they stay under function-<id>/ (listed)")]
    Delete {
        /// Function name.
        name: String,
        /// Delete the function's secrets (every version) first.
        #[arg(long, conflicts_with = "keep_secrets")]
        delete_secrets: bool,
        /// Keep the function's secrets (they stay under its old id; a new deploy of the name
        /// gets a new id and does not see them).
        #[arg(long)]
        keep_secrets: bool,
        /// How keyvault's attestation is checked before secrets are deleted (the function id
        /// comes from its owner-signed manifest).
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Invoke a function.
    Invoke(InvokeArgs),
    /// Every version of a function: number, code hash, when deployed, which one is current.
    Versions {
        /// Function name.
        name: String,
    },
    /// Make an earlier version the one that runs: owner-signed activations (the version is
    /// activated and, unless --keep-newer, every newer one deactivated, so keyvault gives them
    /// no secrets), then it is made current. Not a redeploy; the next deploy is current again.
    Rollback {
        /// Function name.
        name: String,
        /// The version to go back to (the latest: undo a rollback).
        #[arg(long)]
        to: u32,
        /// Leave newer versions active (they can still run with secrets when asked by number).
        #[arg(long)]
        keep_newer: bool,
        /// How keyvault's attestation is checked (the function id comes from the version's
        /// owner-signed manifest).
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Recent invocations of a function (kept by the gateway in memory for an hour, 200 at
    /// most): time, execution, version, outcome, duration.
    History {
        /// Function name.
        name: String,
        /// How many, newest last.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=200))]
        limit: u64,
    },
    /// The lines a function logged in its recent plain invocations, and their errors (sealed
    /// invocations show only that they happened: their logs are sealed for the caller).
    #[command(
        after_help = "Examples:\n  cloister fn logs hello\n  cloister fn logs hello --follow"
    )]
    Logs {
        /// Function name.
        name: String,
        /// Keep printing new invocations as they happen (Ctrl-C stops).
        #[arg(long, short)]
        follow: bool,
        /// How many recent invocations to start from.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=200))]
        limit: u64,
    },
    /// Run a function file on this machine, without any server, in the same sandbox the
    /// executor uses (labelled LOCAL: no TEE, nothing confidential).
    #[command(after_help = "Examples:\n  \
        cloister fn run examples/workloads/add.js --params '{\"a\":2,\"b\":3}'\n  \
        cloister fn run hello.js --secret API_KEY=dev-value\n  \
        cloister fn run hello.js --secrets-file .env")]
    Run(RunArgs),
    /// Write a starter function file from a template.
    #[command(after_help = "Examples:\n  \
        cloister fn new greet                          # greet.js from js-basic\n  \
        cloister fn new billing --template js-secret   # reads a declared secret\n  \
        cloister fn new fetcher --template js-async")]
    New {
        /// Function name (the file is NAME.js).
        name: String,
        /// Template.
        #[arg(long, default_value = "js-basic", value_parser = ["js-basic", "js-secret", "js-async"])]
        template: String,
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Allow a version to receive secrets again (owner-signed).
    Activate {
        /// Function name.
        name: String,
        /// Version.
        #[arg(long)]
        version: u32,
    },
    /// Stop a version from receiving secrets (owner-signed); its invocations are refused.
    Deactivate {
        /// Function name.
        name: String,
        /// Version.
        #[arg(long)]
        version: u32,
    },
    /// Add or remove owners of a function (owner- or admin-signed).
    Owners {
        /// Function name.
        name: String,
        /// Identity id to add; repeatable.
        #[arg(long)]
        add: Vec<String>,
        /// Identity id to remove; repeatable.
        #[arg(long)]
        remove: Vec<String>,
    },
}

/// `cloister fn deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Source file.
    pub file: PathBuf,
    /// Confidential code: sealed here to keyvault's attested fleet key; the gateway and the
    /// database hold only ciphertext, only attested executors open it, and invocations are
    /// sealed by default (docs/SEALED.md).
    #[arg(long)]
    pub confidential: bool,
    /// How keyvault's attestation bundle is checked before sealing the code.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Function name (default: the file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Top-level function to call.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Runtime.
    #[arg(long, default_value = "javascript")]
    pub runtime: String,
    /// Environment (selects the secrets namespace) [default: production].
    #[arg(long)]
    pub environment: Option<String>,
    /// Deadline of one invocation, milliseconds: 10 up to the server's maximum (60000 on a
    /// default server) [default: the server's, 5000]. The API calls it `limits.timeoutMs`.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Memory limit, MiB: 4 up to the server's maximum (512 on a default server) [default:
    /// the server's, 64]. The API calls it `limits.memoryMb`.
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// A secret the function needs (`NAME` or `CATEGORY/NAME`); repeatable.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// A key in keyvault the function may use (`context.sign`, `context.publicKey`), by
    /// name, or FUNCTION/NAME for a key another function granted (`cloister key grant`);
    /// repeatable. Make it first with `cloister key create`.
    #[arg(long = "key", value_name = "NAME")]
    pub keys: Vec<String>,
    /// A limit on a declared key, NAME:SETTING (repeatable; keyvault enforces it on every
    /// use): `ops=sign|publicKey[,…]`, `hashes=sha256|keccak256|prehashed[,…]`,
    /// `max-bytes=N`, `rate=N/s|N/min|N/h|N/d|N/<secs>s`, `prefix=TEXT` (a domain tag every
    /// message must begin with, 16-256 bytes). A redeploy keeps the deployed version's
    /// limits on a key it gives no --key-limit; `NAME:none` clears them.
    #[arg(long = "key-limit", value_name = "NAME:SETTING", value_parser = parse_key_limit)]
    pub key_limits: Vec<(String, String)>,
    /// Non-secret configuration the code reads as `context.env.KEY`, KEY=VALUE (repeatable);
    /// part of the signed manifest and visible to anyone who can read the function: never
    /// put a secret here.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_assignment)]
    pub env: Vec<(String, String)>,
    /// An origin the function may reach with `fetch`, `https://HOST[:PORT]`
    /// (`https://*.DOMAIN` for its subdomains, an address to allow a private one;
    /// `http://` only for an origin that has no TLS); repeatable. Without any, the function
    /// reaches no network. docs/EGRESS.md.
    #[arg(long = "egress", value_name = "ORIGIN")]
    pub egress: Vec<String>,
    /// A PEM root certificate trusted, beside the built-in web roots, for this function's
    /// requests only (a private CA): ORIGIN=FILE for one of the --egress origins (FILE alone
    /// when there is just one); repeatable. A root can vouch for any server at its origin.
    #[arg(long = "egress-ca", value_name = "[ORIGIN=]FILE")]
    pub egress_ca: Vec<std::path::PathBuf>,
    /// An egress-only secret: the code never reads it, it places `secrets.ref("NAME")` in a
    /// request header and the executor injects the value on the wire, only as
    /// NAME=https://HOST[:PORT][/PATH-PREFIX]:HEADER allows (repeatable; NAME alone declares
    /// it egress-only, injectable nowhere). The secret is declared as if by --secret.
    #[arg(long = "egress-secret", value_name = "NAME=ORIGIN:HEADER")]
    pub egress_secrets: Vec<String>,
}

/// Parses one `--key-limit NAME:SETTING` (the setting is checked when the limits are built).
fn parse_key_limit(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, setting))
            if !name.is_empty() && (setting.contains('=') || setting == "none") =>
        {
            Ok((name.to_owned(), setting.to_owned()))
        }
        _ => Err(format!(
            "{s:?}: write NAME:SETTING, e.g. signer:rate=10/min or signer:prefix=app:v1:"
        )),
    }
}

/// Parses one `--env KEY=VALUE`.
fn parse_env_assignment(s: &str) -> Result<(String, String), String> {
    cloister_types::function_env::parse_assignment(s).map_err(|e| match s.contains('=') {
        true => e.to_string(),
        false => format!("expected KEY=VALUE, got {s:?}"),
    })
}

/// `cloister fn invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Function name.
    pub name: String,
    /// Parameters as JSON text [default: {}].
    #[arg(long, conflicts_with = "params_file")]
    pub params: Option<String>,
    /// File holding the parameters as JSON (`-` for stdin).
    #[arg(long)]
    pub params_file: Option<PathBuf>,
    /// Version to run (default latest).
    #[arg(long)]
    pub version: Option<u32>,
    /// Seal the parameters to keyvault's attested fleet key: only an executor reads them and
    /// the result comes back sealed (docs/SEALED.md). Without it the call is plain and
    /// non-sensitive: the gateway sees parameters and result.
    #[arg(long)]
    pub sealed: bool,
    /// Code the sealed call may run (`sha256:<hex>`); the executor refuses any other
    /// (`code_hash_mismatch`). Default: the code hash the server lists for the version.
    #[arg(long, requires = "sealed")]
    pub expect_code_hash: Option<String>,
    /// Seal even though the function behind the name, its manifest signer, or its latest
    /// version went back since you last sealed to it (each is pinned on first use).
    #[arg(long, requires = "sealed")]
    pub accept_function_change: bool,
    /// Ask the executor for a signed receipt, check it, and save it with keyvault's bundle
    /// to FILE for `cloister receipt verify`.
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    /// How keyvault's attestation bundle is checked before sealing (or a receipt).
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `cloister fn run FILE`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The function's JavaScript file.
    pub file: PathBuf,
    /// Parameters as JSON text [default: {}].
    #[arg(long, conflicts_with = "params_file")]
    pub params: Option<String>,
    /// File holding the parameters as JSON (`-` for stdin).
    #[arg(long)]
    pub params_file: Option<PathBuf>,
    /// Non-secret configuration the code reads as `context.env.KEY`, KEY=VALUE (repeatable);
    /// part of the signed manifest and visible to anyone who can read the function: never
    /// put a secret here.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_assignment)]
    pub env: Vec<(String, String)>,
    /// A secret the function sees, NAME=VALUE (repeatable). Values on a command line are
    /// visible to other local users: prefer --secrets-file for real ones.
    #[arg(long, value_name = "NAME=VALUE")]
    pub secret: Vec<String>,
    /// A `.env`-style file of NAME=VALUE lines (`#` comments, `export ` allowed, one pair of
    /// surrounding quotes removed; no escapes or `$VAR` substitution).
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
    /// Function name shown to the code (`context.functionName`) [default: the file stem].
    #[arg(long)]
    pub name: Option<String>,
    /// Name of the handler function.
    #[arg(long, default_value = "handler")]
    pub entrypoint: String,
    /// Deadline in milliseconds [default: the server default].
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Memory limit in MiB [default: the server default].
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// Directory holding cloister-worker (default: next to this executable).
    #[arg(long, env = "CLOISTER_TRUSTED_DIR", hide_env_values = true)]
    pub trusted_dir: Option<PathBuf>,
}

/// `cloister token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its value is printed once.
    Create {
        /// Role: admin, developer, invoker, or metrics (reads GET /metrics and nothing else:
        /// for a Prometheus scraper).
        #[arg(long, value_parser = ["admin", "developer", "invoker", "metrics"])]
        role: String,
        /// Human label.
        #[arg(long)]
        label: Option<String>,
        /// Identity id the token acts for (`cloister identity show`); a developer token
        /// acts only on functions that identity owns.
        #[arg(long = "for-identity", value_name = "ID")]
        for_identity: Option<String>,
        /// An invoker token may invoke only these functions (repeatable); without it, any.
        #[arg(long = "function", value_name = "NAME")]
        functions: Vec<String>,
    },
    /// List active tokens.
    List,
    /// Revoke a token by id.
    Revoke {
        /// Token id (`tok_...`).
        id: String,
    },
}

/// `cloister bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory with the reference workloads.
    #[arg(long, default_value = "examples/workloads")]
    pub workloads: PathBuf,
    /// Only these workloads (file stems); default: all non-adversarial ones.
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// Sequential warm invocations per workload (latency).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent clients for the throughput phase.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds of the throughput phase per workload.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Also measure the Node.js baseline (fresh V8 context per request) when node is installed.
    #[arg(long)]
    pub node: bool,
    /// Measure secrets instead: warm overhead of a cached secret, first invocation after a
    /// rotation, sequential `secret put` rate.
    #[arg(long)]
    pub secrets: bool,
    /// Measure sealed invocations instead: server CPU per call and throughput of plain
    /// against sealed add.js (and with receipts), client seal/open/verify cost.
    #[arg(long)]
    pub sealed: bool,
    /// Measure `context.sign` instead: a warm function signing once with an Ed25519 key in
    /// keyvault against the same function without the call (latency, then throughput at
    /// --clients), and the signature alone in process (the floor).
    #[arg(long)]
    pub signing: bool,
    /// Time N sequential deploys (new versions of one function; signed when an identity is
    /// in use) instead of the workloads.
    #[arg(long, default_value_t = 0)]
    pub deploys: usize,
    /// Sim root to trust for `--secrets` (default: trust-on-first-use pin).
    #[arg(long, env = "CLOISTER_SIM_ROOT", hide_env_values = true)]
    pub sim_root: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_is_consistent() {
        command().debug_assert();
    }

    /// Every command a user runs (each leaf of the tree) shows an example in its `--help`,
    /// and every entry of the table names a real command.
    #[test]
    fn every_command_has_an_example() {
        fn leaves(c: &clap::Command, path: String, out: &mut Vec<(String, bool)>) {
            let subs: Vec<_> = c
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let has = c
                    .get_after_help()
                    .is_some_and(|h| h.to_string().contains("cloister "));
                out.push((path.clone(), has));
            }
            for s in subs {
                leaves(s, format!("{path} {}", s.get_name()), out);
            }
        }
        let mut out = Vec::new();
        leaves(&command(), String::new(), &mut out);
        let missing: Vec<_> = out.iter().filter(|(_, has)| !has).map(|(p, _)| p).collect();
        assert!(
            missing.is_empty(),
            "{} without an example: {missing:#?}",
            missing.len()
        );
        for (path, _) in crate::examples::EXAMPLES {
            assert!(
                out.iter().any(|(p, _)| p.trim() == *path),
                "the examples table names `{path}`, which is no command"
            );
        }
    }
}

/// The command tree with every command's examples attached (`crate::examples`).
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    crate::examples::attach(Cli::command(), "")
}

/// Log output of a server process (and of the roles `serve` starts).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: `text` (ANSI colours only on a terminal, never with NO_COLOR) or `json`
    /// (one object per line). The level is RUST_LOG (default info); one line per invocation
    /// has the target `cloister::invocation` (function, version, execution id, outcome,
    /// durations; never parameters, results or secrets).
    #[arg(
        long,
        env = "CLOISTER_LOG_FORMAT",
        hide_env_values = true,
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    pub log_format: String,
}

impl LogArgs {
    /// The chosen format.
    pub fn format(&self) -> cloister_role::logging::LogFormat {
        cloister_role::logging::LogFormat::parse(&self.log_format).unwrap_or_default()
    }
}
