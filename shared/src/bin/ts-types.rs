//! Writes the TypeScript definitions of the client contract (`chat_shared::ts`):
//! `chat-ts-types <dir>` writes `<dir>/index.d.ts`. Run through `clients/typescript/generate`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: chat-ts-types <output directory>");
        return ExitCode::from(2);
    };
    let path = dir.join("index.d.ts");
    match std::fs::write(&path, chat_shared::ts::render()) {
        Ok(()) => {
            eprintln!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat-ts-types: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
