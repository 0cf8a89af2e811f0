//! Examples shown at the end of each command's `--help`, in one table (commands that carry
//! their own `after_help` keep it).

/// `(command path, examples)`; the path omits `cloister`.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "serve",
        "cloister serve --dev\n  cloister serve --dev --data-dir /tmp/c --listen 127.0.0.1:9000 --log-format json",
    ),
    (
        "gateway",
        "cloister gateway --listen 127.0.0.1:8787 --executor-url http://127.0.0.1:8788 --keyvault-url http://127.0.0.1:8789   # normally started by serve",
    ),
    (
        "fn deploy",
        "cloister fn deploy examples/workloads/add.js --name add\n  cloister fn deploy hello.js --secret API_KEY --timeout-ms 2000 --memory-mb 64\n  cloister fn deploy private.js --confidential\n  cloister fn deploy payments.js --key signer\n  cloister fn deploy weather.js --egress https://api.weather.example --egress-secret WEATHER_KEY=https://api.weather.example:Authorization",
    ),
    ("fn list", "cloister fn list\n  cloister --json fn list"),
    (
        "fn show",
        "cloister fn show add\n  cloister fn show add --version 2",
    ),
    (
        "fn owners",
        "cloister fn owners add\n  cloister fn owners add --add <identity-id>",
    ),
    ("fn activate", "cloister fn activate add --version 2"),
    ("fn deactivate", "cloister fn deactivate add --version 3"),
    (
        "fn invoke",
        "cloister fn invoke add --params '{\"a\":2,\"b\":3}'\n  cloister fn invoke add --sealed --params-file params.json --receipt add.receipt.json",
    ),
    ("fn versions", "cloister fn versions add"),
    (
        "fn rollback",
        "cloister fn rollback add --to 2              # v3 and later deactivated, v2 current\n  cloister fn rollback add --to 3 --keep-newer",
    ),
    (
        "fn history",
        "cloister fn history add\n  cloister --json fn history add --limit 100",
    ),
    (
        "token create",
        "cloister token create --role invoker --label ci\n  cloister token create --role developer --for-identity <identity-id>\n  cloister token create --role invoker --function add --function hello   # only these",
    ),
    ("token list", "cloister token list"),
    ("token revoke", "cloister token revoke <token-id>"),
    (
        "bench",
        "cloister bench --workloads examples/workloads\n  cloister bench --sealed --workloads examples/workloads --clients 32 --seconds 5",
    ),
    (
        "attest verify",
        "cloister attest verify nitro.cbor --at 2022-10-13T09:00:00Z\n  cloister attest verify report.bin --format sev-snp --online",
    ),
    ("attest inspect", "cloister attest inspect nitro.cbor"),
    ("attest roots", "cloister attest roots"),
    ("attest measure", "cloister attest measure --role keyvault"),
    (
        "keyvault migrate",
        "cloister keyvault migrate --recovery-key-file .cloister/recovery.key",
    ),
    ("keyvault rotate-mek", "cloister keyvault rotate-mek"),
    (
        "keyvault backup",
        "cloister keyvault backup --out backup.db",
    ),
    (
        "keyvault restore",
        "cloister keyvault restore --from backup.db",
    ),
    ("keyvault policy show", "cloister keyvault policy show"),
    (
        "keyvault policy set",
        "cloister keyvault policy set policy.json",
    ),
    (
        "secret put",
        "cloister secret put API_KEY --function hello            # asks, hidden\n  echo -n value | cloister secret put API_KEY --function hello --from-stdin",
    ),
    (
        "secret rotate",
        "cloister secret rotate API_KEY --function hello --value-file new.txt",
    ),
    (
        "secret seal",
        "cloister secret seal API_KEY --function hello --value-file key.bin > body.json\n  curl -X PUT -H \"Authorization: Bearer $T\" -d @body.json $URL/v1/secrets/<path>",
    ),
    ("secret list", "cloister secret list --function hello"),
    (
        "key create",
        "cloister key create signer --function payments\n  cloister key create eth --function payments --algorithm ecdsa-secp256k1",
    ),
    (
        "key rotate",
        "cloister key rotate signer --function payments",
    ),
    (
        "key list",
        "cloister key list --function payments\n  cloister --json key list --function payments",
    ),
    (
        "key import",
        "cloister key import legacy --function payments --algorithm ecdsa-secp256k1 --secret-file key.hex",
    ),
    (
        "key export",
        "cloister key export portable --function payments --recipient <x25519-hex> > body.json\n  cloister --identity admin.json identity sign cloister/key-export/v1 < body.json > admin.sig\n  cloister key export portable --function payments --recipient <x25519-hex> --admin-signed @admin.sig",
    ),
    (
        "key grant",
        "cloister key grant signer --function payments --to refunds\n  cloister fn deploy refunds.js --key payments/signer",
    ),
    (
        "key revoke",
        "cloister key revoke signer --function payments --to refunds",
    ),
    (
        "key sign",
        "cloister key sign signer --function payments --message 'payments:v1:refund 42'\n  cloister key sign eth --function payments --message-hex 0x00 --hash keccak256 --json",
    ),
    (
        "key verify",
        "cloister key verify signer --function payments --message 'payments:v1:refund 42' --signature <hex>",
    ),
    (
        "key public",
        "cloister key public signer --function payments\n  cloister key public signer --function payments --version 1",
    ),
    (
        "key versions",
        "cloister key versions signer --function payments --json",
    ),
    (
        "secret delete",
        "cloister secret delete API_KEY --function hello",
    ),
    (
        "secret versions",
        "cloister secret versions API_KEY --function hello",
    ),
    (
        "secret rotate-dek",
        "cloister secret rotate-dek --function hello",
    ),
    (
        "audit list",
        "cloister audit list --after 100 --limit 50\n  cloister --json audit list",
    ),
    ("audit verify", "cloister audit verify"),
    (
        "identity create",
        "cloister identity create --passphrase\n  cloister identity create --file ci.identity --label ci",
    ),
    ("identity show", "cloister identity show"),
    ("identity list", "cloister identity list"),
    (
        "identity grant",
        "cloister identity grant --public-key <hex> --role developer --expires-in 90d",
    ),
    (
        "identity sign",
        "echo '{\"function_id\":\"<id>\",\"name\":\"hello\",\"version\":2,\"active\":true}' \\\n    | cloister identity sign cloister/activate/v1",
    ),
    ("identity rotate", "cloister identity rotate"),
    (
        "identity revoke",
        "cloister identity revoke <identity-id> --compromised",
    ),
    ("trust show", "cloister trust show"),
    (
        "trust add root",
        "cloister trust add root <64-hex-fingerprint>",
    ),
    (
        "trust add keyvault",
        "cloister trust add keyvault $(cloister attest measure --role keyvault)",
    ),
    (
        "trust add executor",
        "cloister trust add executor <96-hex-measurement>",
    ),
    (
        "trust remove root",
        "cloister trust remove root <64-hex-fingerprint>",
    ),
    (
        "trust remove keyvault",
        "cloister trust remove keyvault <96-hex-measurement>",
    ),
    (
        "trust remove executor",
        "cloister trust remove executor <96-hex-measurement>",
    ),
    ("trust max-age", "cloister trust max-age 120"),
    ("trust reset", "cloister trust reset"),
    ("trust list", "cloister trust list"),
    ("receipt verify", "cloister receipt verify add.receipt.json"),
    ("logout", "cloister logout https://cloister.example.com"),
    ("servers", "cloister servers\n  cloister --json servers"),
];

/// `cmd` (at `path`) and its subcommands with their examples attached.
pub fn attach(mut cmd: clap::Command, path: &str) -> clap::Command {
    let here = path.trim();
    if cmd.get_after_help().is_none()
        && let Some((_, ex)) = EXAMPLES.iter().find(|(p, _)| *p == here)
    {
        cmd = cmd.after_help(format!("Examples:\n  {ex}"));
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = format!("{here} {name}");
        cmd = cmd.mut_subcommand(&name, |s| attach(s, &sub_path));
    }
    cmd
}
