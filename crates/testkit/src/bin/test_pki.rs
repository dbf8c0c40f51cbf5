//! `test-pki DIR`: makes a test CA and a leaf it signed for `localhost` and `127.0.0.1`
//! ([`ringwire_testkit::tls::Pki::localhost`]) and writes `DIR/ca.crt`, `DIR/server.crt`
//! and `DIR/server.key` (PEM). `scripts/autobahn.sh` uses it for the gate over wss://.

use ringwire_testkit::tls::Pki;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: test-pki DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("test-pki: {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    let pki = Pki::localhost();
    let (cert, key) = pki.write(&dir, "server");
    let ca = dir.join("ca.crt");
    if let Err(e) = std::fs::write(&ca, &pki.ca_pem) {
        eprintln!("test-pki: {}: {e}", ca.display());
        return ExitCode::from(1);
    }
    println!("{} {} {}", ca.display(), cert.display(), key.display());
    ExitCode::SUCCESS
}
