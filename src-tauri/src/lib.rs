//! Prism's desktop app: a Tauri shell whose thin commands call prism-engine.
//!
//! The request path: `ui/ipc.js` invokes a command ([`commands`]), which parses its
//! arguments and calls [`core::Core`]; a batch is a [`jobs::Job`] running the engine's
//! scheduler on a thread of its own and reporting on a per-job `ipc::Channel`; pixels
//! reach the page only as previews made by the engine, by id, through the `prism://`
//! scheme ([`preview`]).
//!
//! `core` ties the owners of state together; they do not import it or each other's
//! state: [`library`], [`settings`], [`jobs`] (which knows the library) and [`remote`].

pub mod about;
pub mod coalesce;
pub mod commands;
pub mod compare;
pub mod core;
pub mod dialogs;
pub mod error;
pub mod jobs;
pub mod library;
pub mod live;
pub mod preview;
pub mod remote;
pub mod save;
pub mod settings;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tauri::http::{header, Response, StatusCode};
use tauri::{Manager, RunEvent, Runtime};

use crate::core::Core;
use crate::error::AppError;
use crate::preview::PixelRequest;
use crate::settings::{SettingsStore, TokenBackend};

/// Threads that render previews, apart from the batch's pool so previews keep coming
/// while a batch runs: the grid's thumbnails on some, what the inspector shows on others,
/// so an image clicked open never waits behind a folder's worth of thumbnails.
pub struct PreviewThreads {
    /// Grid thumbnails.
    pub grid: rayon::ThreadPool,
    /// The inspector's panes (and its live previews).
    pub view: rayon::ThreadPool,
}

impl PreviewThreads {
    /// Up to four threads for the grid, one per core (at most four) for the inspector.
    pub fn new() -> Result<Self, rayon::ThreadPoolBuildError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let pool = |name: &'static str| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |i| format!("prism-{name}-{i}"))
                .build()
        };
        Ok(PreviewThreads {
            grid: pool("thumbs")?,
            view: pool("view")?,
        })
    }

    /// The pool a `prism://` path is rendered on.
    pub fn for_path(&self, path: &str) -> &rayon::ThreadPool {
        match PixelRequest::parse(path) {
            Some(req) if req.for_grid() => &self.grid,
            _ => &self.view,
        }
    }
}

/// The `prism://` answer for a URL path: a preview (JPEG, or PNG with transparency), or
/// a status and a reason.
pub fn pixel_response(core: &Core, path: &str) -> Response<Vec<u8>> {
    let text = |status: StatusCode, msg: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(msg.into_bytes())
    };
    let res = match PixelRequest::parse(path) {
        None => text(StatusCode::NOT_FOUND, format!("no pixels at {path}")),
        Some(req) => match core.pixels(req) {
            Ok(bytes) => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, preview::media_type(&bytes))
                // Ids and revs are never reused, so a URL's bytes never change.
                .header(header::CACHE_CONTROL, "max-age=31536000, immutable")
                .body(bytes.to_vec()),
            Err(e @ (AppError::UnknownImage(_) | AppError::NoResult(_))) => {
                text(StatusCode::NOT_FOUND, e.to_string())
            }
            Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        },
    };
    // The builder only fails on invalid header values, and these are constants.
    res.unwrap_or_else(|_| Response::new(Vec::new()))
}

/// Whether the webview may go to `url`: only the app's own pages, never the network.
pub fn navigation_allowed(url: &tauri::Url) -> bool {
    match url.scheme() {
        "tauri" => url.host_str() == Some("localhost"),
        // How Windows serves the app's own pages.
        "http" | "https" => url.host_str() == Some("tauri.localhost"),
        "about" => url.path() == "blank",
        _ => false,
    }
}

fn nav_guard<R: Runtime>() -> tauri::plugin::TauriPlugin<R> {
    tauri::plugin::Builder::new("prism-nav-guard")
        .on_navigation(|_, url| navigation_allowed(url))
        .build()
}

/// This process's work folder under the cache folder; folders left by processes that
/// are gone are removed (the results in them were never saved by the user).
pub fn work_dir(cache: &Path) -> PathBuf {
    if let Ok(entries) = std::fs::read_dir(cache) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("work-") else {
                continue;
            };
            // Where /proc does not exist nothing is known about the pid: keep it.
            let gone = Path::new("/proc").is_dir() && !Path::new("/proc").join(pid).exists();
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    cache.join(format!("work-{}", std::process::id()))
}

/// Builds and runs the app; returns when the window closes.
pub fn run() {
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(nav_guard())
        .register_asynchronous_uri_scheme_protocol("prism", |ctx, request, responder| {
            let app = ctx.app_handle();
            let core = app.state::<Arc<Core>>().inner().clone();
            let path = request.uri().path().to_string();
            let threads = app.state::<PreviewThreads>();
            threads.for_path(&path).spawn(move || {
                // rayon aborts the process on a panic in `spawn`; a broken file must
                // cost its preview only.
                let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pixel_response(&core, &path)
                }))
                .unwrap_or_else(|panic| {
                    let msg = prism_engine::exec::panic_message(panic.as_ref());
                    Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .body(format!("cannot render {path}: {msg}").into_bytes())
                        .unwrap_or_else(|_| Response::new(Vec::new()))
                });
                responder.respond(answer);
            });
        })
        .setup(|app| {
            let config = app.path().app_config_dir()?;
            let work = work_dir(&app.path().app_cache_dir()?);
            let store = SettingsStore::with_tokens_in(&config, TokenBackend::SystemKeyring);
            let core = Core::with_store(store, &work)?;
            // Files given on the command line ("Open with Prism") start in the library.
            let opened = about::launch_paths(std::env::args_os().skip(1));
            if !opened.is_empty() {
                core.add_paths(&opened);
            }
            app.manage(core);
            app.manage(PreviewThreads::new()?);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::catalogue,
            commands::snapshot,
            commands::add_paths,
            commands::remove_images,
            commands::set_global_chain,
            commands::set_override,
            commands::save_preset,
            commands::delete_preset,
            commands::apply_preset,
            commands::export_preset,
            commands::import_preset,
            commands::update_settings,
            commands::process,
            commands::cancel,
            commands::attach_job,
            commands::suggested_name,
            commands::dialog_start,
            commands::pick_save_folder,
            commands::save_one,
            commands::save_all,
            commands::add_node,
            commands::remove_node,
            commands::set_token,
            commands::trust_node,
            commands::connect_nodes,
            commands::watch_nodes,
            commands::close_connections,
            commands::nodes,
            commands::about,
            commands::readout,
            commands::set_live,
        ])
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("prism-app: cannot start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|handle, event| {
        if let RunEvent::Exit = event {
            if let Some(core) = handle.try_state::<Arc<Core>>() {
                core.shutdown();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apps_own_pages_are_reachable() {
        for ok in [
            "tauri://localhost/index.html",
            "http://tauri.localhost/",
            "about:blank",
        ] {
            assert!(navigation_allowed(&ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "https://example.com/",
            "http://localhost:8080/",
            "file:///etc/passwd",
            "tauri://evil.com/",
            "prism://localhost/thumb/1",
        ] {
            assert!(!navigation_allowed(&bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn previews_say_their_media_type_and_missing_ones_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let core = Core::new(&dir.path().join("config"), &dir.path().join("work")).unwrap();
        let clear = dir.path().join("clear.png");
        image::RgbaImage::from_pixel(40, 30, image::Rgba([0, 200, 0, 100]))
            .save(&clear)
            .unwrap();
        let solid = dir.path().join("solid.png");
        image::RgbImage::from_pixel(40, 30, image::Rgb([0, 200, 0]))
            .save(&solid)
            .unwrap();
        core.add_paths(&[clear, solid]);
        let kind = |path: &str| {
            let r = pixel_response(&core, path);
            (r.status(), r.headers()[header::CONTENT_TYPE].clone())
        };
        assert_eq!(
            kind("/thumb/0"),
            (StatusCode::OK, "image/png".parse().unwrap())
        );
        assert_eq!(
            kind("/source/1"),
            (StatusCode::OK, "image/jpeg".parse().unwrap())
        );
        assert_eq!(
            pixel_response(&core, "/thumb/9").status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn stale_work_folders_are_removed_and_ours_is_named_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 0 in /proc.
        let stale = dir.path().join("work-0");
        std::fs::create_dir_all(stale.join("job-1")).unwrap();
        let other = dir.path().join("keep-me");
        std::fs::create_dir_all(&other).unwrap();
        let ours = work_dir(dir.path());
        assert_eq!(
            ours,
            dir.path().join(format!("work-{}", std::process::id()))
        );
        if Path::new("/proc").is_dir() {
            assert!(!stale.exists());
        }
        assert!(other.exists());
    }
}
