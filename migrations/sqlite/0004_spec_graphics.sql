-- The console protocol of a course's VM spec: VNC (in-browser noVNC) or SPICE
-- (carried by the same WebSocket proxy; native clients via a .vv file).
ALTER TABLE vm_specs ADD COLUMN graphics TEXT NOT NULL DEFAULT 'vnc'
    CHECK (graphics IN ('vnc', 'spice'));
