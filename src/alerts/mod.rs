//! Temporary until the parsers land (replaced by the alerts branch).
use crate::core::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::core::event::ChannelMessage;

pub fn parse_channel_message(message: &ChannelMessage) -> Option<Alert> {
    let title = message.text.lines().next()?.trim().to_owned();
    Some(Alert {
        source: AlertSource::Person,
        service: None,
        environment: None,
        severity: Severity::Unknown,
        status: AlertStatus::Firing,
        fingerprint: Alert::derive_fingerprint(&AlertSource::Person, &title, &Default::default()),
        title,
        description: message.text.clone(),
        started_at: message.posted_at,
        ended_at: None,
        labels: Default::default(),
        link: None,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(String);

pub fn parse_alertmanager(_body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    Err(PayloadError("not yet".into()))
}

pub fn parse_grafana(_body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    Err(PayloadError("not yet".into()))
}
