//! What an audit entry records: the actions (one snake_case name each, the
//! same in code, the API, the CSV and the UI's texts) and the kinds of
//! target they act on.

use serde::{Deserialize, Serialize};

/// Declares the action enum with its one name per action, so the list of
/// names (API filter, UI select) can never drift from the enum.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A security-relevant action.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in the order the UI lists them.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            pub fn parse(s: &str) -> Option<Action> {
                match s {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// A sign-in, successful or failed (`outcome`), with its `provider`.
    SignIn = "sign_in",
    SignOut = "sign_out",
    /// `detail`: `{from, to}`.
    UserRoleChanged = "user_role_changed",
    UserDisabled = "user_disabled",
    UserEnabled = "user_enabled",
    /// An admin set a user's password or forced a change of it.
    UserPasswordReset = "user_password_reset",
    VmStart = "vm_start",
    VmShutdown = "vm_shutdown",
    VmPoweroff = "vm_poweroff",
    VmReboot = "vm_reboot",
    /// The personal layer discarded.
    VmReset = "vm_reset",
    /// A console token or viewer file issued: `detail` names the VM's owner
    /// and whether the opener is someone else (a teacher or staff member).
    ConsoleOpen = "console_open",
    LayerExport = "layer_export",
    LayerImport = "layer_import",
    /// Files collected from a course's VMs.
    Collection = "collection",
    TemplateSeal = "template_seal",
    TemplateDelete = "template_delete",
    SettingsSla = "settings_sla",
    SettingsCalendar = "settings_calendar",
    SettingsAlertRules = "settings_alert_rules",
    SettingsNotifications = "settings_notifications",
    SettingsServiceLevels = "settings_service_levels",
}

/// What kind of thing an entry's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    User,
    Vm,
    Template,
    Course,
    /// A setting of the service (SLA, calendar, alert rules, …).
    Settings,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::User => "user",
            TargetKind::Vm => "vm",
            TargetKind::Template => "template",
            TargetKind::Course => "course",
            TargetKind::Settings => "settings",
        }
    }

    pub fn parse(s: &str) -> Option<TargetKind> {
        [
            TargetKind::User,
            TargetKind::Vm,
            TargetKind::Template,
            TargetKind::Course,
            TargetKind::Settings,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Whether the action happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_round_trips_and_matches_serde() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert_eq!(
                serde_json::to_value(a).ok(),
                Some(serde_json::Value::String(a.as_str().to_owned()))
            );
        }
        assert_eq!(Action::parse("nope"), None);
    }

    #[test]
    fn target_kinds_round_trip() {
        for k in ["user", "vm", "template", "course", "settings"] {
            assert_eq!(TargetKind::parse(k).map(TargetKind::as_str), Some(k));
        }
        assert_eq!(TargetKind::parse("node"), None);
    }
}
