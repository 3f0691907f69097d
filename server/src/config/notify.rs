//! Server-wide notification channels (e-mail, Slack, signed webhook) and the hosts they may
//! reach.

use clap::{Args, ValueEnum};
use proctor_schema::notifications::{self, NotificationDefaults};
use url::Url;

use super::{ConfigError, Credential, credential, host_name, http_url, item, items, positive};
use super::{choice, setting, text};

/// Notifications, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Notifications")]
pub struct Notify {
    /// SMTP server for the e-mails about runs; no e-mail when unset.
    #[arg(long, env = "PROCTOR_MAIL_SERVER_HOST", value_parser = mail_host)]
    pub mail_server_host: Option<String>,
    /// SMTP port (default 465 with `tls`, 587 otherwise).
    #[arg(long, env = "PROCTOR_MAIL_SERVER_PORT", value_parser = positive::<u16>)]
    pub mail_server_port: Option<u16>,
    /// SMTP user name (no authentication when unset).
    #[arg(long, env = "PROCTOR_MAIL_USERNAME", value_parser = text)]
    pub mail_username: Option<String>,
    /// SMTP password.
    #[arg(long, env = "PROCTOR_MAIL_PASSWORD", hide_env_values = true, value_parser = credential)]
    pub mail_password: Option<Credential>,
    /// Sender address of the e-mails (default: the user name, if it is an address).
    #[arg(long, env = "PROCTOR_MAIL_FROM", value_parser = text)]
    pub mail_from: Option<String>,
    /// SMTP encryption: `starttls` (required; the default), `tls` (implicit, port 465),
    /// `opportunistic` (STARTTLS when offered) or `none`.
    #[arg(long, env = "PROCTOR_MAIL_TLS", value_parser = choice::<MailTls>)]
    pub mail_tls: Option<MailTls>,
    /// E-mail recipients (comma-separated) told about every run whose proc and schedule name
    /// none, on the states of `PROCTOR_NOTIFY_ON`.
    #[arg(long, env = "PROCTOR_NOTIFY_EMAILS", value_delimiter = ',', value_parser = item)]
    pub notify_emails: Vec<String>,
    /// The final states (comma-separated, e.g. `FAILED,TIMED_OUT`) the server-wide targets hear
    /// about; default: every final state.
    #[arg(long, env = "PROCTOR_NOTIFY_ON", value_delimiter = ',', value_parser = item)]
    pub notify_on: Vec<String>,
    /// Slack incoming webhook told about every run whose proc and schedule name none.
    #[arg(long, env = "PROCTOR_SLACK_WEBHOOK_URL", hide_env_values = true, value_parser = slack)]
    pub slack_webhook_url: Option<Credential>,
    /// URL a signed JSON outcome of every run whose proc and schedule name none is posted to.
    #[arg(long, env = "PROCTOR_NOTIFY_WEBHOOK_URL", value_parser = webhook_url)]
    pub notify_webhook_url: Option<Url>,
    /// Key of the HMAC-SHA256 signature (`X-Proctor-Signature: sha256=<hex>`) on webhook
    /// notifications; required with a server-wide webhook URL.
    #[arg(long, env = "PROCTOR_NOTIFY_WEBHOOK_SECRET", hide_env_values = true)]
    #[arg(value_parser = credential)]
    pub notify_webhook_secret: Option<Credential>,
    /// Hosts notifications may reach even on loopback or private addresses (comma-separated).
    #[arg(long, env = "PROCTOR_NOTIFY_ALLOWED_HOSTS", value_delimiter = ',')]
    #[arg(value_parser = host_name)]
    pub notify_allowed_hosts: Vec<String>,
}

/// SMTP encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MailTls {
    /// STARTTLS, required.
    #[value(name = "starttls")]
    StartTls,
    /// TLS from the first byte (port 465).
    #[value(name = "tls")]
    Implicit,
    /// STARTTLS when the server offers it.
    Opportunistic,
    /// Plain text (a local relay or a test sink).
    None,
}

/// Server-wide notification channels, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationSettings {
    /// The server-wide targets, as the domain sees them.
    pub defaults: NotificationDefaults,
    /// The SMTP server, when e-mail is configured.
    pub mail: Option<MailSettings>,
    /// Slack webhook for runs whose proc and schedule name none.
    pub slack_webhook_url: Option<Credential>,
    /// Webhook for runs whose proc and schedule name none.
    pub webhook_url: Option<String>,
    /// HMAC key signing webhook notifications.
    pub webhook_secret: Option<Credential>,
    /// Hosts notifications may reach whatever address they resolve to, in lower case.
    pub allowed_hosts: Vec<String>,
}

/// How e-mail is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailSettings {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// Encryption.
    pub tls: MailTls,
    /// User name and password, when the server wants them.
    pub login: Option<(String, Credential)>,
    /// Sender address.
    pub from: String,
}

impl Notify {
    /// Checks that the mail settings go together and that every target has what it needs.
    pub fn validate(&self) -> Result<NotificationSettings, ConfigError> {
        let mail = self.mail()?;
        let webhook_url = self.notify_webhook_url.as_ref().map(Url::to_string);
        if webhook_url.is_some() && self.notify_webhook_secret.is_none() {
            let why = "receivers check the signature with it";
            let message = format!("must be set with PROCTOR_NOTIFY_WEBHOOK_URL: {why}");
            return Err(ConfigError::new(
                setting!(Self, notify_webhook_secret),
                message,
            ));
        }
        let emails = notifications::check_emails("", &items(&self.notify_emails))
            .map_err(|error| ConfigError::new(setting!(Self, notify_emails), error))?;
        if !emails.is_empty() && mail.is_none() {
            return Err(ConfigError::new(
                setting!(Self, notify_emails),
                "is set but no SMTP server is (PROCTOR_MAIL_SERVER_HOST)",
            ));
        }
        let on = match items(&self.notify_on) {
            states if states.is_empty() => notifications::final_states(),
            states => notifications::parse_states("", &states)
                .map_err(|error| ConfigError::new(setting!(Self, notify_on), error))?,
        };
        Ok(NotificationSettings {
            defaults: NotificationDefaults {
                emails,
                slack: self.slack_webhook_url.is_some(),
                webhook: webhook_url.is_some(),
                on,
            },
            mail,
            slack_webhook_url: self.slack_webhook_url.clone(),
            webhook_url,
            webhook_secret: self.notify_webhook_secret.clone(),
            allowed_hosts: items(&self.notify_allowed_hosts),
        })
    }

    fn mail(&self) -> Result<Option<MailSettings>, ConfigError> {
        let Some(host) = &self.mail_server_host else {
            let given = [
                (
                    self.mail_server_port.is_some(),
                    setting!(Self, mail_server_port),
                ),
                (self.mail_username.is_some(), setting!(Self, mail_username)),
                (self.mail_from.is_some(), setting!(Self, mail_from)),
                (self.mail_tls.is_some(), setting!(Self, mail_tls)),
            ];
            return match given.into_iter().find(|(set, _)| *set) {
                Some((_, setting)) => Err(ConfigError::new(
                    setting,
                    "is set but PROCTOR_MAIL_SERVER_HOST is not; set the SMTP host too",
                )),
                None => Ok(None),
            };
        };
        let tls = self.mail_tls.unwrap_or(MailTls::StartTls);
        let port = match (self.mail_server_port, tls) {
            (Some(port), _) => port,
            (None, MailTls::Implicit) => 465,
            (None, _) => 587,
        };
        let login = match (&self.mail_username, &self.mail_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    setting!(Self, mail_password),
                    "must be set with PROCTOR_MAIL_USERNAME",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    setting!(Self, mail_username),
                    "must be set with PROCTOR_MAIL_PASSWORD",
                ));
            }
        };
        let (from_setting, from) = match (&self.mail_from, &login) {
            (Some(from), _) => (setting!(Self, mail_from), from.clone()),
            (None, Some((user, _))) => (setting!(Self, mail_username), user.clone()),
            (None, None) => {
                return Err(ConfigError::new(
                    setting!(Self, mail_from),
                    "must be set when e-mail has no user name to send from",
                ));
            }
        };
        // `name@domain` or `Name <name@domain>`, as the mailer will read it.
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new(
                from_setting,
                format!("{from:?} is not an e-mail address to send from; set PROCTOR_MAIL_FROM"),
            ));
        }
        Ok(Some(MailSettings {
            host: host.clone(),
            port,
            tls,
            login,
            from,
        }))
    }
}

fn mail_host(raw: &str) -> Result<String, String> {
    let host = text(raw)?;
    if host.contains([':', '/', ' ', '@']) {
        return Err(format!(
            "{host:?} is not a host name; the port goes in PROCTOR_MAIL_SERVER_PORT"
        ));
    }
    Ok(host)
}

/// A Slack URL is a credential: checked, never repeated.
fn slack(raw: &str) -> Result<Credential, String> {
    http_url(raw, false).map(|_| Credential::new(raw.trim()))
}

fn webhook_url(raw: &str) -> Result<Url, String> {
    http_url(raw, true)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, refused, settings};
    use super::*;

    #[test]
    fn each_bad_value_names_its_setting() {
        let host = "--mail-server-host=smtp.example.com --mail-from=p@example.com";
        assert_refused(&format!(
            "--mail-server-port=25                                   PROCTOR_MAIL_SERVER_PORT
             --mail-server-host=smtp.example.com:587                 PROCTOR_MAIL_SERVER_HOST
             --mail-server-host=smtp.example.com                     PROCTOR_MAIL_FROM
             --mail-server-host=smtp --mail-username=proctor         PROCTOR_MAIL_PASSWORD
             --mail-server-host=smtp --mail-password=pw              PROCTOR_MAIL_USERNAME
             --mail-server-host=smtp --mail-username=p --mail-password=pw PROCTOR_MAIL_USERNAME
             {host} --mail-tls=ssl                                   PROCTOR_MAIL_TLS
             {host} --mail-server-port=0                             PROCTOR_MAIL_SERVER_PORT
             --notify-emails=x@example.com                           PROCTOR_NOTIFY_EMAILS
             --notify-on=FAILED,LATE                                 PROCTOR_NOTIFY_ON
             --slack-webhook-url=hooks.slack.com/x                   PROCTOR_SLACK_WEBHOOK_URL
             --notify-webhook-url=ftp://h/x                          PROCTOR_NOTIFY_WEBHOOK_URL
             --notify-webhook-url=https://h/x                        PROCTOR_NOTIFY_WEBHOOK_SECRET
             --notify-allowed-hosts=*                                PROCTOR_NOTIFY_ALLOWED_HOSTS"
        ));
    }

    #[test]
    fn mail_settings_take_the_legacy_names_and_sensible_defaults() {
        let host = "--mail-server-host=smtp.example.com";
        let user = [
            "--mail-username=proctor@example.com",
            "--mail-password=hunter4",
        ];
        let configured = settings(&[host, user[0], user[1]]).unwrap();
        let mail = configured.notify.mail.clone().expect("mail configured");
        assert_eq!((mail.port, mail.tls), (587, MailTls::StartTls));
        assert_eq!(
            mail.from, "proctor@example.com",
            "the user name is the sender"
        );
        assert!(!format!("{configured:?}").contains("hunter4"));

        let with_tls = |tls: &str| {
            let args = [host, "--mail-from=Proctor <proctor@example.com>", tls];
            settings(&args)
                .unwrap()
                .notify
                .mail
                .expect("mail configured")
        };
        let implicit = with_tls("--mail-tls=TLS");
        assert_eq!((implicit.port, implicit.tls), (465, MailTls::Implicit));
        let plain = with_tls("--mail-tls=none");
        assert_eq!((plain.tls, plain.login), (MailTls::None, None));
    }

    #[test]
    fn a_slack_url_is_a_credential() {
        let secret_url = "https://hooks.slack.com/services/T0/B0/abcdefsecret";
        let configured = settings(&["--slack-webhook-url", secret_url]).unwrap();
        assert!(!format!("{configured:?}").contains("abcdefsecret"));
        assert!(configured.notify.defaults.slack);
        let error = refused(&["--slack-webhook-url=hooks.slack.com/services/abcdefsecret"]);
        assert!(!error.contains("abcdefsecret"), "{error}");
    }
}
