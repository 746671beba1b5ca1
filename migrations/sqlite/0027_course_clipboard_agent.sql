-- The clipboard through a guest agent (issue 18): VMs of a course with this
-- on get a qemu-vdagent channel (clipboard copy/paste on), so QEMU's VNC
-- server offers the extended clipboard to the browser and passes text to
-- and from a spice-vdagent in the guest. Off by default: guests without an
-- agent (the tiny guest) keep "paste as typing".
ALTER TABLE courses ADD COLUMN clipboard_agent INTEGER NOT NULL DEFAULT 0;
