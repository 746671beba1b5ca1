-- While a VM is `stopping` through an ACPI shutdown the server asked for,
-- the time it will be forced off (src/vms/lifecycle.rs): the UI says so.
-- NULL in every other state, and for a shutdown the guest began by itself.
ALTER TABLE vms ADD COLUMN stop_deadline TEXT;
