//! websocket-source: the protocol is in the library (`websocket_source::run`), which
//! http-source also runs for a ws:// endpoint.

use std::process::ExitCode;

use runnel_runtime::app;
use websocket_source::WebSocketSource;

fn main() -> ExitCode {
    app::source_main::<WebSocketSource, _, _>(|config, ctx| async move {
        websocket_source::run::run(&config.config, ctx).await
    })
}
