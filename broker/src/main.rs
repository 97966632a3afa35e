fn main() -> std::process::ExitCode {
    amq_broker::cli::main()
}
