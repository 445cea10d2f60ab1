//! The command line as clap reads it: global options ([`Cli`]) and one enum per command group.
//! Values that clap can check (URLs, durations, times, ranges, conflicting flags) are checked
//! here, so a mistake is a usage error (exit 2) before any request is sent. What only the service
//! can judge (names, tenants, permissions, roles) is left to it.
//!
//! There is no flag for the secret on purpose: flags show up in process listings and shell
//! history. It comes from `KEYGATE_ADMIN_SECRET` or `--secret-file` (see [`crate::secret`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::{parse_duration_secs, parse_since};
use crate::exit::EXIT_CODES_HELP;
use crate::ServiceUrl;

/// The key service's own default listen address (`keygate-server --listen`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Longest wait for one answer that `--timeout` accepts, in seconds.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// keygate: manage API keys, OAuth clients, roles and tenant admins of a keygate key service,
/// and read its audit log.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Base URL of the key service (http:// only; see the README on TLS).
    #[arg(long, global = true, env = "KEYGATE_URL", default_value = DEFAULT_URL, value_parser = ServiceUrl::parse)]
    pub url: ServiceUrl,

    /// `table`: aligned columns for people. `json`: the service's JSON, for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// File whose first line is the secret (the admin secret or a tenant admin's `kgta_…`).
    /// Must not be readable by group or others. Takes precedence over KEYGATE_ADMIN_SECRET.
    #[arg(long, global = true, env = "KEYGATE_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,

    /// Longest wait for each answer, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// API keys (`/v1/keys`).
    #[command(subcommand)]
    Keys(KeyCommand),
    /// OAuth 2.0 clients for the client-credentials grant (`/v1/clients`).
    #[command(subcommand)]
    Clients(ClientCommand),
    /// Named sets of permissions within a tenant (`/v1/roles`).
    #[command(subcommand)]
    Roles(RoleCommand),
    /// Secrets that administer one tenant (`/v1/tenant-admins`; super admin only).
    #[command(subcommand)]
    TenantAdmins(TenantAdminCommand),
    /// The audit log (`/v1/audit`).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Who the secret belongs to and what it may grant (`/v1/me`).
    Whoami,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; its secret is printed this once.
    Create(CreateCredential),
    /// List keys, of one tenant or all.
    List(ListArgs),
    /// Show one key.
    Get(IdArg),
    /// Revoke a key for good.
    Revoke(IdArg),
    /// Set a new expiry (from now), or none.
    Renew(RenewArgs),
    /// Issue a new secret; the old ones keep working for the grace period.
    Rotate(RotateArgs),
    /// Delete a key and its usage.
    Delete(IdArg),
    /// Requests counted for a key, per UTC day.
    Usage(IdArg),
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client; its secret is printed this once.
    Create(CreateCredential),
    /// List clients, of one tenant or all.
    List(ListArgs),
    /// Show one client.
    Get(IdArg),
    /// Revoke a client for good (tokens already issued stay valid until they expire).
    Revoke(IdArg),
    /// Set a new expiry (from now), or none.
    Renew(RenewArgs),
    /// Issue a new secret; the old ones keep working for the grace period.
    Rotate(RotateArgs),
    /// Delete a client.
    Delete(IdArg),
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List roles, of one tenant or all.
    List(ListArgs),
    /// Show one role.
    Get(IdArg),
    /// Create a role.
    Create(CreateRole),
    /// Change a role's description or permissions (the others are kept).
    Update(UpdateRole),
    /// Delete a role no key, client or tenant admin holds.
    Delete(IdArg),
}

#[derive(Debug, Subcommand)]
pub enum TenantAdminCommand {
    /// Create a tenant admin of one tenant; its secret is printed this once.
    Create(CreateCredential),
    /// List tenant admins, of one tenant or all.
    List(ListArgs),
    /// Show one tenant admin.
    Get(IdArg),
    /// Revoke a tenant admin for good.
    Revoke(IdArg),
    /// Set a new expiry (from now), or none.
    Renew(RenewArgs),
    /// Issue a new secret; the old ones keep working for the grace period.
    Rotate(RotateArgs),
    /// Delete a tenant admin.
    Delete(IdArg),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Events, newest first, one page (the cursor of the next is printed) or --all.
    List(AuditList),
    /// Print new events as they happen, until Ctrl-C.
    Tail(AuditTail),
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// The id, as `list` shows it.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant's.
    #[arg(long)]
    pub tenant: Option<String>,
}

/// When a new credential expires.
#[derive(Debug, Args)]
pub struct ExpiryArgs {
    /// Lifetime from now: seconds, or a number with s, m, h or d (`90d`). Default: the
    /// service's default lifetime.
    #[arg(long, value_parser = parse_duration_secs, conflicts_with = "never_expires")]
    pub expires_in: Option<u64>,

    /// No expiry.
    #[arg(long)]
    pub never_expires: bool,
}

#[derive(Debug, Args)]
pub struct CreateCredential {
    /// A name people recognise it by.
    #[arg(long)]
    pub name: String,

    /// The tenant it acts for.
    #[arg(long)]
    pub tenant: String,

    /// A permission it holds directly (repeat, or separate with commas).
    #[arg(long = "permission", value_delimiter = ',')]
    pub permissions: Vec<String>,

    /// A role (by name, in the same tenant) whose permissions it holds (repeat, or separate
    /// with commas).
    #[arg(long = "role", value_delimiter = ',')]
    pub roles: Vec<String>,

    #[command(flatten)]
    pub expiry: ExpiryArgs,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The id, as `list` shows it.
    pub id: String,

    #[command(flatten)]
    pub expiry: ExpiryArgs,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The id, as `list` shows it.
    pub id: String,

    /// How long the old secrets keep working: seconds, or a number with s, m, h or d (`1d`);
    /// `0` retires them at once. Required, so that no one cuts off callers by accident.
    #[arg(long, value_parser = parse_duration_secs)]
    pub grace_period: u64,
}

#[derive(Debug, Args)]
pub struct CreateRole {
    #[arg(long)]
    pub tenant: String,

    /// Letters, digits and `: . _ -`, 1 to 64.
    #[arg(long)]
    pub name: String,

    #[arg(long, default_value = "")]
    pub description: String,

    /// A permission of the role (repeat, or separate with commas).
    #[arg(long = "permission", value_delimiter = ',')]
    pub permissions: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["description", "permissions", "no_permissions"])))]
pub struct UpdateRole {
    /// The role id (`rol_…`).
    pub id: String,

    /// The new description.
    #[arg(long)]
    pub description: Option<String>,

    /// The new permissions, replacing all the old ones (repeat, or separate with commas).
    #[arg(
        long = "permission",
        value_delimiter = ',',
        conflicts_with = "no_permissions"
    )]
    pub permissions: Option<Vec<String>>,

    /// Remove all permissions.
    #[arg(long)]
    pub no_permissions: bool,
}

/// What the audit log is filtered by, for `list` and `tail`.
#[derive(Debug, Args)]
pub struct AuditFilter {
    /// Only events of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,

    /// Only events by this actor.
    #[arg(long)]
    pub actor: Option<String>,

    /// Only this action (`key.create`, `auth.failure`, …).
    #[arg(long)]
    pub action: Option<String>,

    /// Only events about this key, client, role or tenant admin.
    #[arg(long)]
    pub target_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditList {
    #[command(flatten)]
    pub filter: AuditFilter,

    /// Only events at or after this time: RFC 3339 (`2026-12-01T00:00:00Z`) or an age (`2h`,
    /// `7d`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<String>,

    /// Only events before this time: RFC 3339 or an age.
    #[arg(long, value_parser = parse_since)]
    pub until: Option<String>,

    /// Events per page, 1 to 500.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: Option<u16>,

    /// Start after this cursor (printed by the previous page).
    #[arg(long, conflicts_with = "all")]
    pub after: Option<String>,

    /// Follow the cursor to the last page.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct AuditTail {
    #[command(flatten)]
    pub filter: AuditFilter,

    /// Seconds between polls.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,

    /// How many of the latest events to print first.
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=500))]
    pub lines: u16,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_key_is_created_with_comma_separated_permissions_and_a_lifetime_in_days() {
        let cli = Cli::try_parse_from([
            "keygate",
            "keys",
            "create",
            "--name",
            "ci",
            "--tenant",
            "acme",
            "--permission",
            "orders:read,orders:write",
            "--expires-in",
            "2d",
        ])
        .unwrap();
        let Command::Keys(KeyCommand::Create(create)) = cli.command else {
            panic!("not keys create: {:?}", cli.command);
        };
        assert_eq!(create.permissions, ["orders:read", "orders:write"]);
        assert_eq!(create.expiry.expires_in, Some(2 * 86_400));
    }

    #[test]
    fn expires_in_and_never_expires_together_are_a_usage_error() {
        let error = Cli::try_parse_from([
            "keygate",
            "keys",
            "renew",
            "kid",
            "--expires-in",
            "1h",
            "--never-expires",
        ])
        .unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn a_role_update_must_change_something() {
        let error = Cli::try_parse_from(["keygate", "roles", "update", "rol_1"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn an_audit_limit_above_500_is_a_usage_error() {
        let error =
            Cli::try_parse_from(["keygate", "audit", "list", "--limit", "501"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn global_options_may_follow_the_command() {
        let cli = Cli::try_parse_from(["keygate", "whoami", "--output", "json"]).unwrap();
        assert_eq!(cli.output, Output::Json);
    }
}
