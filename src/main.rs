fn main() {
    eprintln!("amqctl: not built yet");
    std::process::exit(2);
}
