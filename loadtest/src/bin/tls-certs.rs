//! `tls-certs`: writes a test CA and a `localhost` leaf signed by it into a directory
//! (`ca.pem`, `chain.pem`, `key.pem`), for running the TLS peers and `loadgen --tls` by
//! hand; `bench-all` makes its own per run. Prints the three paths.

use clap::Parser;
use ringwire_loadtest::tls::{self, KeyKind};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Writes a test CA and a localhost certificate (PEM) for the TLS benchmarks")]
struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Key type of the CA and the leaf.
    #[arg(long, value_enum, default_value_t = KeyKind::EcdsaP256)]
    key: KeyKind,
}

fn main() {
    let args = Args::parse();
    match tls::write(&args.out, args.key) {
        Ok(f) => println!("ca {}\nchain {}\nkey {}", f.ca.display(), f.chain.display(), f.key.display()),
        Err(e) => {
            eprintln!("tls-certs: {e}");
            std::process::exit(1);
        }
    }
}
