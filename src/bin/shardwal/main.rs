//! The shardwal command-line tool (inspect, dump, verify, recover, bench).
fn main() {
    eprintln!("not yet implemented");
    std::process::exit(2);
}
