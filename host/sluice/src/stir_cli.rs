//! `sluice stir sign` and `sluice stir verify`: STIR/SHAKEN on a captured INVITE, every step
//! printed — the numbers found and their canonical form, the PASSporT's header and claims,
//! the certificate chain, and each check's outcome. The key is used, never printed.

use sluice_b2bua::identity::call_numbers;
use sluice_sip::{HeaderName, Message};
use sluice_stir::passport::steps;
use sluice_stir::verify::{finish, start, trusted, Policy, Started};
use sluice_stir::{parse_identity, Attest, Certificate, Claims, Expect, Passport, Signer};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum StirCmd {
    /// Sign a captured INVITE as a trunk that signs would: print the numbers, the PASSporT
    /// and the INVITE with its Identity header.
    Sign(SignArgs),
    /// Verify the Identity of a captured INVITE: print each header decoded, the certificate
    /// chain (from --certificate, or fetched from x5u) and each check. Exit 0 when it passed.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The INVITE (LF or CRLF line ends).
    #[arg(long)]
    message: PathBuf,
    /// The private key (P-256, PEM).
    #[arg(long)]
    key: PathBuf,
    /// Where verifiers fetch the certificate.
    #[arg(long)]
    x5u: String,
    #[arg(long, value_parser = ["A", "B", "C"], default_value = "B")]
    attest: String,
    /// `iat`, UNIX seconds (default: now).
    #[arg(long)]
    iat: Option<u64>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The INVITE with its Identity header(s).
    #[arg(long)]
    message: PathBuf,
    /// The trusted root certificates (PEM).
    #[arg(long)]
    trust_anchors: PathBuf,
    /// The certificate chain (PEM) instead of fetching x5u.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// Roots for the HTTPS fetch of x5u besides the system's.
    #[arg(long)]
    x5u_ca: Option<PathBuf>,
    /// Now, UNIX seconds (default: the clock).
    #[arg(long)]
    now: Option<u64>,
    #[arg(long, default_value_t = 60)]
    max_age: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_invite(path: &std::path::Path) -> Result<Message, String> {
    let text = crate::plugin_test::read_capture(path)?;
    sluice_sip::parse_message(text.as_bytes()).map_err(|e| format!("{}: {e:?}", path.display()))
}

fn json(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
}

fn print_passport(jws: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jws.split('.');
    for what in ["header", "claims"] {
        let decoded = parts
            .next()
            .and_then(|p| b64.decode(p).ok())
            .unwrap_or_default();
        println!("  {what}: {}", json(&decoded).replace('\n', "\n  "));
    }
}

pub fn run(cmd: StirCmd) -> ExitCode {
    let result = match cmd {
        StirCmd::Sign(a) => sign(a),
        StirCmd::Verify(a) => verify(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice stir: {e}");
            ExitCode::from(2)
        }
    }
}

fn sign(a: SignArgs) -> Result<ExitCode, String> {
    let mut invite = read_invite(&a.message)?;
    let pem = std::fs::read_to_string(&a.key)
        .map_err(|e| format!("{}: cannot read: {e}", a.key.display()))?;
    let signer = Signer::from_pem(&pem, &a.x5u).map_err(|e| format!("{}: {e}", a.key.display()))?;
    let (orig, dest) = call_numbers(&invite);
    println!("calling number (P-Asserted-Identity, else From): {orig:?}");
    println!("called number (To, else Request-URI): {dest:?}");
    let (Some(orig), Some(dest)) = (orig, dest) else {
        return Err("no telephone number to sign for".into());
    };
    let attest = Attest::parse(&a.attest).ok_or("attest: A, B or C")?;
    let claims = Claims::new(attest, &orig, &dest, a.iat.unwrap_or_else(unix_now));
    let value = signer.identity(&claims);
    println!("PASSporT:");
    print_passport(&value);
    println!("Identity: {value}");
    invite.headers.remove(&HeaderName::Identity);
    invite.headers.push(HeaderName::Identity, value);
    println!("\n{invite}");
    Ok(ExitCode::SUCCESS)
}

fn fetch(url: &str, roots: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let https = crate::certs::HttpsCertificates::new(std::time::Duration::from_secs(5), 0, roots)
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(https.get(url.to_string())).map(|b| b.to_vec())
}

fn verify(a: VerifyArgs) -> Result<ExitCode, String> {
    let invite = read_invite(&a.message)?;
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
    let anchors = Certificate::chain_from_pem(&read(&a.trust_anchors)?)
        .map_err(|e| format!("{}: {e}", a.trust_anchors.display()))?;
    let policy = Policy {
        anchors,
        max_age: a.max_age,
        allowed_hosts: Vec::new(),
        allow_http: true,
    };
    let values: Vec<&str> = invite.headers.values(&HeaderName::Identity).collect();
    println!("Identity headers: {}", values.len());
    for (i, v) in values.iter().enumerate() {
        println!("[{i}] {v}");
        match parse_identity(v).and_then(|id| Passport::decode(&id.jws).map(|_| id)) {
            Ok(id) => print_passport(&id.jws),
            Err(e) => println!("  unusable: {e}"),
        }
    }
    let (orig, dest) = call_numbers(&invite);
    let (orig, dest) = (orig.unwrap_or_default(), dest.unwrap_or_default());
    println!("calling number (canonical): {orig}\ncalled number (canonical): {dest}");
    let now = a.now.unwrap_or_else(unix_now);
    let expect = Expect {
        now,
        max_age: a.max_age,
        orig: &orig,
        dest: &dest,
    };
    let (url, identity) = match start(&policy, values) {
        Started::Done(outcome) => {
            println!("verstat={} ({})", outcome.verstat(), outcome.label());
            return Ok(ExitCode::FAILURE);
        }
        Started::Fetch { url, identity } => (url, identity),
    };
    println!("certificate URL (x5u): {url}");
    let pem = match &a.certificate {
        Some(p) => read(p)?,
        None => {
            let roots = a.x5u_ca.as_ref().map(read).transpose()?;
            match fetch(&url, roots.as_deref()) {
                Ok(b) => b,
                Err(e) => {
                    println!("fetch: failed: {e}\nverstat=TN-Validation-Failed (fetch-failed)");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    let chain = Certificate::chain_from_pem(&pem).map_err(|e| e.to_string())?;
    for (i, c) in chain.iter().enumerate() {
        println!(
            "certificate [{i}]: subject {} / issuer {} / valid {}..{} / TNAuthList {}",
            c.subject,
            c.issuer,
            c.not_before,
            c.not_after,
            if c.has_tn_auth_list { "yes" } else { "no" }
        );
    }
    let at = i64::try_from(now).unwrap_or(i64::MAX);
    let shown = |r: Result<(), String>| r.map_or_else(|e| format!("FAILED: {e}"), |()| "ok".into());
    println!(
        "check: chain to a trust anchor, validity, TNAuthList: {}",
        shown(trusted(&policy, &chain, at).map_err(|f| f.label().to_string()))
    );
    if let (Some(signer), Ok(passport)) = (chain.first(), Passport::decode(&identity.jws)) {
        for (name, r) in steps(&identity, &passport, &signer.public_key, expect) {
            println!("check: {name}: {}", shown(r.map_err(|e| e.to_string())));
        }
    }
    let outcome = finish(&policy, &identity, Ok(&pem), expect);
    println!("verstat={} ({})", outcome.verstat(), outcome.label());
    Ok(
        if matches!(outcome, sluice_stir::verify::Outcome::Passed { .. }) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
