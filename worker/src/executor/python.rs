//! `python` jobs: `interpreter script args`, `interpreter -m module args` or `interpreter -c code args`.

use burst_proto::v1::PythonSpec;
use burst_proto::v1::python_spec::Entry;

use super::Invocation;

pub fn invocation(spec: &PythonSpec, default_interpreter: &str) -> Result<Invocation, String> {
    let mut args = match &spec.entry {
        Some(Entry::Script(path)) => vec![path.clone()],
        Some(Entry::Module(module)) => vec!["-m".into(), module.clone()],
        Some(Entry::Code(code)) => vec!["-c".into(), code.clone()],
        None => return Err("python spec needs one of script, module or code".into()),
    };
    args.extend(spec.args.iter().cloned());
    let program = if spec.interpreter.is_empty() { default_interpreter.to_string() } else { spec.interpreter.clone() };
    Ok(Invocation { program, args, stop: None, launch_failures: &[] })
}
