//! The commands: each turns its arguments into one or a few [`ApiClient`] calls and prints the
//! answer, as the service's JSON (`--output json`) or as a table ([`crate::render`]). Nothing
//! here speaks HTTP or decides an exit code.
//!
//! New secrets (create and rotate of keys, clients and tenant admins) are printed once, in the
//! answer, with a note in table mode that they cannot be shown again.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::api::{
    Answer, ApiClient, ApiError, AuditEvent, AuditPage, AuditQuery, ClientList, Credential, Expiry,
    KeyList, Kind, Me, NewCredential, NewRole, Role, TenantAdminList, Usage,
};
use crate::args::{
    AuditCommand, AuditFilter, AuditList, AuditTail, ClientCommand, Command, CreateCredential,
    ExpiryArgs, KeyCommand, Output, RoleCommand, TenantAdminCommand, UpdateRole,
};
use crate::exit::Failure;
use crate::render::{list, optional, Fields, Table};

/// Largest page `audit tail` asks for.
const TAIL_PAGE: u16 = 100;
/// Most pages one `audit tail` poll reads to catch up; past that it says it skipped events.
const TAIL_MAX_PAGES: usize = 10;

/// Where and how a command prints: answers on `out`, notes and warnings on `err`.
pub struct Console<'a> {
    pub output: Output,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

impl Console<'_> {
    fn json(&mut self, json: &Value) -> Result<(), Failure> {
        serde_json::to_writer_pretty(&mut *self.out, json).map_err(std::io::Error::from)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// The answer as JSON, or as `table` draws it.
    fn print<T>(
        &mut self,
        answer: &Answer<T>,
        table: impl FnOnce(&T, &mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        match self.output {
            Output::Json => self.json(&answer.json),
            Output::Table => Ok(table(&answer.view, self.out)?),
        }
    }

    /// A confirmation for an action that answers nothing (delete): a line in table mode,
    /// nothing in JSON mode, where the exit code says it.
    fn done(&mut self, what: std::fmt::Arguments<'_>) -> Result<(), Failure> {
        if self.output == Output::Table {
            writeln!(self.out, "{what}")?;
        }
        Ok(())
    }
}

pub async fn run(
    command: Command,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    match command {
        Command::Keys(command) => keys(command, api, console).await,
        Command::Clients(command) => clients(command, api, console).await,
        Command::Roles(command) => roles(command, api, console).await,
        Command::TenantAdmins(command) => tenant_admins(command, api, console).await,
        Command::Audit(AuditCommand::List(args)) => audit_list(args, api, console).await,
        Command::Audit(AuditCommand::Tail(args)) => audit_tail(args, api, console).await,
        Command::Whoami => {
            let me = api.me().await?;
            console.print(&me, write_me)
        }
    }
}

async fn keys(
    command: KeyCommand,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    let kind = Kind::Key;
    match command {
        KeyCommand::Create(args) => {
            let key = api.create(kind, &new_credential(args)).await?;
            print_credential(console, kind, &key)
        }
        KeyCommand::List(args) => {
            let keys: Answer<KeyList> = api.list(kind, args.tenant.as_deref()).await?;
            console.print(&keys, |list, out| write_credentials(kind, &list.keys, out))
        }
        KeyCommand::Get(args) => print_credential(console, kind, &api.get(kind, &args.id).await?),
        KeyCommand::Revoke(args) => {
            print_credential(console, kind, &api.revoke(kind, &args.id).await?)
        }
        KeyCommand::Renew(args) => {
            let key = api.renew(kind, &args.id, expiry(&args.expiry)).await?;
            print_credential(console, kind, &key)
        }
        KeyCommand::Rotate(args) => {
            let key = api.rotate(kind, &args.id, args.grace_period).await?;
            print_credential(console, kind, &key)
        }
        KeyCommand::Delete(args) => {
            api.delete(kind, &args.id).await?;
            console.done(format_args!("Deleted key {}.", args.id))
        }
        KeyCommand::Usage(args) => {
            let usage = api.usage(&args.id).await?;
            console.print(&usage, write_usage)
        }
    }
}

async fn clients(
    command: ClientCommand,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    let kind = Kind::Client;
    match command {
        ClientCommand::Create(args) => {
            let client = api.create(kind, &new_credential(args)).await?;
            print_credential(console, kind, &client)
        }
        ClientCommand::List(args) => {
            let clients: Answer<ClientList> = api.list(kind, args.tenant.as_deref()).await?;
            console.print(&clients, |list, out| {
                write_credentials(kind, &list.clients, out)
            })
        }
        ClientCommand::Get(args) => {
            print_credential(console, kind, &api.get(kind, &args.id).await?)
        }
        ClientCommand::Revoke(args) => {
            print_credential(console, kind, &api.revoke(kind, &args.id).await?)
        }
        ClientCommand::Renew(args) => {
            let client = api.renew(kind, &args.id, expiry(&args.expiry)).await?;
            print_credential(console, kind, &client)
        }
        ClientCommand::Rotate(args) => {
            let client = api.rotate(kind, &args.id, args.grace_period).await?;
            print_credential(console, kind, &client)
        }
        ClientCommand::Delete(args) => {
            api.delete(kind, &args.id).await?;
            console.done(format_args!("Deleted client {}.", args.id))
        }
    }
}

async fn tenant_admins(
    command: TenantAdminCommand,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    let kind = Kind::TenantAdmin;
    match command {
        TenantAdminCommand::Create(args) => {
            let admin = api.create(kind, &new_credential(args)).await?;
            print_credential(console, kind, &admin)
        }
        TenantAdminCommand::List(args) => {
            let admins: Answer<TenantAdminList> = api.list(kind, args.tenant.as_deref()).await?;
            console.print(&admins, |list, out| {
                write_credentials(kind, &list.tenant_admins, out)
            })
        }
        TenantAdminCommand::Get(args) => {
            print_credential(console, kind, &api.get(kind, &args.id).await?)
        }
        TenantAdminCommand::Revoke(args) => {
            print_credential(console, kind, &api.revoke(kind, &args.id).await?)
        }
        TenantAdminCommand::Renew(args) => {
            let admin = api.renew(kind, &args.id, expiry(&args.expiry)).await?;
            print_credential(console, kind, &admin)
        }
        TenantAdminCommand::Rotate(args) => {
            let admin = api.rotate(kind, &args.id, args.grace_period).await?;
            print_credential(console, kind, &admin)
        }
        TenantAdminCommand::Delete(args) => {
            api.delete(kind, &args.id).await?;
            console.done(format_args!("Deleted tenant admin {}.", args.id))
        }
    }
}

async fn roles(
    command: RoleCommand,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    match command {
        RoleCommand::List(args) => {
            let roles = api.roles(args.tenant.as_deref()).await?;
            console.print(&roles, |list, out| write_roles(&list.roles, out))
        }
        RoleCommand::Get(args) => {
            let role = api.role(&args.id).await?;
            console.print(&role, write_role)
        }
        RoleCommand::Create(args) => {
            let role = api
                .create_role(&NewRole {
                    tenant: args.tenant,
                    name: args.name,
                    description: args.description,
                    permissions: args.permissions,
                })
                .await?;
            console.print(&role, write_role)
        }
        RoleCommand::Update(args) => {
            let role = update_role(api, args).await?;
            console.print(&role, write_role)
        }
        RoleCommand::Delete(args) => {
            api.delete_role(&args.id).await?;
            console.done(format_args!("Deleted role {}.", args.id))
        }
    }
}

/// `PUT` replaces both the description and the permissions; what the user did not name is read
/// first and sent back unchanged.
async fn update_role(api: &ApiClient, args: UpdateRole) -> Result<Answer<Role>, ApiError> {
    let keeps_permissions = args.permissions.is_none() && !args.no_permissions;
    let current = if args.description.is_none() || keeps_permissions {
        Some(api.role(&args.id).await?.view)
    } else {
        None
    };
    let description = args
        .description
        .or_else(|| current.as_ref().map(|r| r.description.clone()))
        .unwrap_or_default();
    let permissions = if args.no_permissions {
        Vec::new()
    } else {
        args.permissions
            .or_else(|| current.map(|r| r.permissions))
            .unwrap_or_default()
    };
    api.update_role(&args.id, &description, &permissions).await
}

fn expiry(args: &ExpiryArgs) -> Expiry {
    Expiry {
        expires_in_secs: args.expires_in,
        never_expires: args.never_expires,
    }
}

fn new_credential(args: CreateCredential) -> NewCredential {
    NewCredential {
        expiry: expiry(&args.expiry),
        name: args.name,
        tenant: args.tenant,
        permissions: args.permissions,
        roles: args.roles,
    }
}

async fn audit_list(
    args: AuditList,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    let mut query = audit_query(&args.filter);
    query.since = args.since;
    query.until = args.until;
    query.limit = args.limit;
    query.after = args.after;
    let first = api.audit(&query).await?;
    if !args.all {
        console.print(&first, |page, out| write_events(&page.events, out))?;
        // On stderr, so that stdout is the table alone; JSON has it as `next`.
        if let (Output::Table, Some(next)) = (console.output, &first.view.next) {
            writeln!(console.err, "More events: add --after {next}")?;
        }
        return Ok(());
    }
    let mut events: Vec<Value> = Vec::new();
    let mut views: Vec<AuditEvent> = Vec::new();
    let mut page = first;
    loop {
        events.extend(page_events(&page.json));
        views.extend(page.view.events);
        let Some(next) = page.view.next else { break };
        query.after = Some(next);
        page = api.audit(&query).await?;
    }
    let all = Answer {
        json: serde_json::json!({ "events": events, "next": null }),
        view: AuditPage {
            events: views,
            next: None,
        },
    };
    console.print(&all, |page, out| write_events(&page.events, out))
}

fn audit_query(filter: &AuditFilter) -> AuditQuery {
    AuditQuery {
        tenant: filter.tenant.clone(),
        actor: filter.actor.clone(),
        action: filter.action.clone(),
        target_id: filter.target_id.clone(),
        ..AuditQuery::default()
    }
}

/// The `events` of a page as the service sent them.
fn page_events(json: &Value) -> Vec<Value> {
    json["events"].as_array().cloned().unwrap_or_default()
}

/// Prints the latest `--lines` events, then polls for newer ones every `--interval` until
/// Ctrl-C. In JSON mode, one event per line (JSON Lines). A poll that fails because the service
/// is down or failing is reported and retried; one that is refused (401, 403, 4xx) ends the
/// command.
async fn audit_tail(
    args: AuditTail,
    api: &ApiClient,
    console: &mut Console<'_>,
) -> Result<(), Failure> {
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let query = audit_query(&args.filter);
    let interval = Duration::from_secs(args.interval);

    let mut first = query.clone();
    first.limit = Some(args.lines.max(1));
    let latest = tokio::select! {
        _ = &mut stop => return Ok(()),
        latest = api.audit(&first) => latest?,
    };
    let mut newest = latest.view.events.first().map(|e| e.id.clone());
    let shown: Vec<(Value, AuditEvent)> = page_events(&latest.json)
        .into_iter()
        .zip(latest.view.events)
        .take(usize::from(args.lines))
        .collect();
    if console.output == Output::Table {
        writeln!(console.out, "{}", tail_line(&TAIL_HEADER))?;
    }
    print_tail(console, shown)?;

    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        let fresh = tokio::select! {
            _ = &mut stop => return Ok(()),
            fresh = events_after(api, &query, newest.as_deref()) => fresh,
        };
        match fresh {
            Ok((events, complete)) => {
                if !complete {
                    writeln!(
                        console.err,
                        "keygate: more than {} new events since the last poll; older ones \
                         were skipped (use `audit list` to read them)",
                        TAIL_MAX_PAGES * usize::from(TAIL_PAGE)
                    )?;
                }
                if let Some((_, event)) = events.first() {
                    newest = Some(event.id.clone());
                }
                print_tail(console, events)?;
            }
            Err(error @ (ApiError::Unreachable { .. } | ApiError::Timeout { .. })) => {
                writeln!(console.err, "keygate: {error}; retrying")?;
            }
            Err(ApiError::Status {
                status, message, ..
            }) if status.is_server_error() => {
                writeln!(console.err, "keygate: {message} ({status}); retrying")?;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The events newer than the one with id `newest` (all, if `None`), newest first, reading pages
/// until that event turns up; and whether they are all (false: [`TAIL_MAX_PAGES`] were read
/// without finding it).
async fn events_after(
    api: &ApiClient,
    query: &AuditQuery,
    newest: Option<&str>,
) -> Result<(Vec<(Value, AuditEvent)>, bool), ApiError> {
    let mut query = query.clone();
    query.limit = Some(TAIL_PAGE);
    let mut fresh = Vec::new();
    for _ in 0..TAIL_MAX_PAGES {
        let page = api.audit(&query).await?;
        for (json, event) in page_events(&page.json).into_iter().zip(page.view.events) {
            if newest == Some(event.id.as_str()) {
                return Ok((fresh, true));
            }
            fresh.push((json, event));
        }
        match page.view.next {
            Some(next) => query.after = Some(next),
            // The end of the log without meeting `newest`: it was trimmed away, or the log was
            // empty before; everything read is new.
            None => return Ok((fresh, true)),
        }
    }
    Ok((fresh, false))
}

const TAIL_HEADER: [&str; 6] = ["AT", "ACTION", "OUTCOME", "ACTOR", "TENANT", "TARGET"];

/// One tail line: fixed column widths, since later lines cannot widen earlier ones.
fn tail_line(cells: &[&str; 6]) -> String {
    let [at, action, outcome, actor, tenant, target] = cells;
    let line = format!("{at:<25} {action:<22} {outcome:<8} {actor:<24} {tenant:<16} {target}");
    line.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Prints tail events (given newest first) oldest first.
fn print_tail(console: &mut Console<'_>, events: Vec<(Value, AuditEvent)>) -> Result<(), Failure> {
    for (json, event) in events.into_iter().rev() {
        match console.output {
            Output::Json => {
                serde_json::to_writer(&mut *console.out, &json).map_err(std::io::Error::from)?;
                writeln!(console.out)?;
            }
            Output::Table => {
                let target = target(&event);
                let tenant = optional(event.tenant.as_deref());
                let line = tail_line(&[
                    &event.at,
                    &event.action,
                    &event.outcome,
                    &event.actor,
                    &tenant,
                    &target,
                ]);
                writeln!(console.out, "{line}")?;
            }
        }
    }
    console.out.flush()?;
    Ok(())
}

fn target(event: &AuditEvent) -> String {
    match (&event.target_type, &event.target_id) {
        (Some(kind), Some(id)) => format!("{kind} {id}"),
        (None, Some(id)) => id.clone(),
        (Some(kind), None) => kind.clone(),
        (None, None) => "-".to_owned(),
    }
}

fn write_events(events: &[AuditEvent], out: &mut dyn Write) -> std::io::Result<()> {
    let mut table = Table::new(&[
        "AT", "ACTION", "OUTCOME", "ACTOR", "TENANT", "TARGET", "SOURCE", "REQUEST",
    ]);
    for event in events {
        table.row(vec![
            event.at.clone(),
            event.action.clone(),
            event.outcome.clone(),
            event.actor.clone(),
            optional(event.tenant.as_deref()),
            target(event),
            optional(event.source.as_deref()),
            optional(event.request_id.as_deref()),
        ]);
    }
    if table.is_empty() {
        return writeln!(out, "No events.");
    }
    table.write(out)
}

/// One key, client or tenant admin; with its new secret and the note that it is shown once.
fn print_credential(
    console: &mut Console<'_>,
    kind: Kind,
    answer: &Answer<Credential>,
) -> Result<(), Failure> {
    console.print(answer, |credential, out| {
        write_credential(kind, credential, out)?;
        if credential.secret.is_some() {
            writeln!(
                out,
                "\nThe secret is shown this once: store it now. The service keeps only its hash."
            )?;
        }
        Ok(())
    })
}

fn write_credential(kind: Kind, c: &Credential, out: &mut dyn Write) -> std::io::Result<()> {
    let mut fields = Fields::new();
    fields
        .add(
            if kind == Kind::Client {
                "client id"
            } else {
                "id"
            },
            &c.id,
        )
        .add("name", &c.name)
        .add("tenant", &c.tenant)
        .add("status", &c.status)
        .add("prefix", optional(c.prefix.as_deref()))
        .add(
            "permissions",
            list(c.permissions.as_deref().unwrap_or_default()),
        )
        .add("roles", list(&c.roles));
    if let Some(effective) = &c.effective_permissions {
        fields.add("effective permissions", list(effective));
    }
    fields
        .add("created at", &c.created_at)
        .add("expires at", c.expires_at.as_deref().unwrap_or("never"))
        .add("revoked at", optional(c.revoked_at.as_deref()));
    if kind == Kind::Key {
        fields.add("last used at", optional(c.last_used_at.as_deref()));
    }
    if let Some(secret) = &c.secret {
        fields.add(
            if kind == Kind::Client {
                "client secret"
            } else {
                "secret"
            },
            secret,
        );
    }
    fields.write(out)
}

fn write_credentials(kind: Kind, all: &[Credential], out: &mut dyn Write) -> std::io::Result<()> {
    if all.is_empty() {
        return writeln!(out, "No {}s.", kind.noun());
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "TENANT",
        "STATUS",
        "SECRET",
        "EXPIRES",
        "ROLES",
        "PERMISSIONS",
    ]);
    for c in all {
        let permissions = c
            .effective_permissions
            .as_deref()
            .or(c.permissions.as_deref())
            .unwrap_or_default();
        table.row(vec![
            c.id.clone(),
            c.name.clone(),
            c.tenant.clone(),
            c.status.clone(),
            optional(c.prefix.as_deref()),
            c.expires_at.clone().unwrap_or_else(|| "never".to_owned()),
            list(&c.roles),
            list(permissions),
        ]);
    }
    table.write(out)
}

fn write_usage(usage: &Usage, out: &mut dyn Write) -> std::io::Result<()> {
    Fields::new()
        .add("key", &usage.key_id)
        .add("total", usage.total.to_string())
        .add("last used at", optional(usage.last_used_at.as_deref()))
        .write(out)?;
    if usage.daily.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(&["DAY (UTC)", "REQUESTS"]);
    for day in &usage.daily {
        table.row(vec![day.day.clone(), day.count.to_string()]);
    }
    table.write(out)
}

fn write_role(role: &Role, out: &mut dyn Write) -> std::io::Result<()> {
    Fields::new()
        .add("id", &role.id)
        .add("tenant", &role.tenant)
        .add("name", &role.name)
        .add("description", &role.description)
        .add("permissions", list(&role.permissions))
        .add("created at", &role.created_at)
        .add("updated at", &role.updated_at)
        .write(out)
}

fn write_roles(roles: &[Role], out: &mut dyn Write) -> std::io::Result<()> {
    if roles.is_empty() {
        return writeln!(out, "No roles.");
    }
    let mut table = Table::new(&["ID", "TENANT", "NAME", "PERMISSIONS", "DESCRIPTION"]);
    for role in roles {
        table.row(vec![
            role.id.clone(),
            role.tenant.clone(),
            role.name.clone(),
            list(&role.permissions),
            role.description.clone(),
        ]);
    }
    table.write(out)
}

fn write_me(me: &Me, out: &mut dyn Write) -> std::io::Result<()> {
    let kind = match me.kind.as_str() {
        "super_admin" => "super admin (the admin secret)",
        "tenant_admin" => "tenant admin",
        other => other,
    };
    Fields::new()
        .add("kind", kind)
        .add("id", optional(me.id.as_deref()))
        .add("name", optional(me.name.as_deref()))
        .add("tenant", me.tenant.as_deref().unwrap_or("all"))
        .add("roles", list(&me.roles))
        .add(
            "may grant",
            me.permissions
                .as_deref()
                .map_or_else(|| "any permission".to_owned(), list),
        )
        .write(out)
}
