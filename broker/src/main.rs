fn main() {
    eprintln!("amq-broker: not built yet");
    std::process::exit(2);
}
