fn main() -> std::process::ExitCode {
    amqctl::cli::main()
}
