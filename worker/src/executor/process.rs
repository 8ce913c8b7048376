//! `process` jobs: the command and its arguments, exactly as given. No shell, unless the command is one.

use burst_proto::v1::ProcessSpec;

use super::Invocation;

pub fn invocation(spec: &ProcessSpec) -> Result<Invocation, String> {
    if spec.command.is_empty() {
        return Err("process.command is empty".into());
    }
    Ok(Invocation { program: spec.command.clone(), args: spec.args.clone(), stop: None, launch_failures: &[] })
}
