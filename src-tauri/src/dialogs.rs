//! The one file dialog the dialog plugin cannot make as asked: Save all's folder picker,
//! whose button must say what it does ("Save Here"), not "Open". On Linux it is GTK's
//! native file chooser with that label; elsewhere the plugin's folder picker, whose
//! button the platform already names for choosing a folder.

use std::path::PathBuf;

use tauri::{Runtime, WebviewWindow};

use crate::error::AppError;

/// Asks for the folder Save all writes into, starting in `start`; `None` if cancelled.
#[cfg(target_os = "linux")]
pub async fn pick_save_folder<R: Runtime>(
    window: WebviewWindow<R>,
    title: String,
    start: Option<PathBuf>,
) -> Result<Option<PathBuf>, AppError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let parent = window.clone();
    // GTK objects live on the main thread; `run` keeps the window painting meanwhile.
    window
        .run_on_main_thread(move || {
            use gtk::prelude::*;
            let owner = parent.gtk_window().ok();
            let dialog = gtk::FileChooserNative::new(
                Some(&title),
                owner.as_ref(),
                gtk::FileChooserAction::SelectFolder,
                Some("_Save Here"),
                Some("_Cancel"),
            );
            dialog.set_modal(true);
            dialog.set_create_folders(true);
            if let Some(dir) = &start {
                dialog.set_current_folder(dir);
            }
            let picked = if dialog.run() == gtk::ResponseType::Accept {
                dialog.filename()
            } else {
                None
            };
            dialog.destroy();
            let _ = tx.send(picked);
        })
        .map_err(|e| AppError::Io(format!("cannot open the folder dialog: {e}")))?;
    rx.await
        .map_err(|_| AppError::Io("the folder dialog closed without an answer".into()))
}

/// Asks for the folder Save all writes into, starting in `start`; `None` if cancelled.
#[cfg(not(target_os = "linux"))]
pub async fn pick_save_folder<R: Runtime>(
    window: WebviewWindow<R>,
    title: String,
    start: Option<PathBuf>,
) -> Result<Option<PathBuf>, AppError> {
    use tauri_plugin_dialog::DialogExt;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = window.dialog().file().set_title(title).set_parent(&window);
    if let Some(dir) = start {
        dialog = dialog.set_directory(dir);
    }
    dialog.pick_folder(move |picked| {
        let _ = tx.send(picked.and_then(|p| p.into_path().ok()));
    });
    rx.await
        .map_err(|_| AppError::Io("the folder dialog closed without an answer".into()))
}
