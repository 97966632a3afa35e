use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    // One binary, two programs: deploy ships amqctl to the hosts as
    // `amq-broker`, and under that name it runs the bundled broker.
    let arg0 = std::env::args_os().next();
    if arg0
        .as_deref()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "amq-broker")
    {
        return amq_broker::cli::main();
    }
    amqctl::cli::main()
}
