//! Emulators of the services synchub talks to (feature `emulators`), for tests, benches,
//! the sandbox and `synchub emulators`. Each keeps real state behind its wire contract and
//! can inject faults: the CRM ([`crm`]) and Microsoft Graph ([`graph`]).

pub mod crm;
pub mod graph;

/// Serve `router` on `addr` (port 0: any free port) in the background; the base URL.
pub(crate) async fn serve_in_background(
    router: axum::Router,
    addr: &str,
    name: &'static str,
) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("{name} emulator stopped: {e}");
        }
    });
    Ok(url)
}
