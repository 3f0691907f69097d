// Every operation the console runs, typed from schema/schema.graphql: build.mjs validates them
// against the SDL, so a schema change that breaks one fails the build, not the console.
import { graphql } from "../../generated/gql/index.ts";

export const SERVER = graphql(`query ConsoleServer { serverInfo { version authEnabled executor storage } me { email name groups admin } }`);

export const PROCS = graphql(`query ConsoleProcs($filter: ProcFilter) { procs(filter: $filter) {
  name description authorizedGroups version updatedAt args { name } secrets { key isSet } } }`);

export const PROC = graphql(`query ConsoleProc($name: String!) { proc(name: $name) {
  name description image command authorizedGroups author timeoutSeconds retries version updatedAt yaml
  args { name description type required default pattern values }
  secrets { key description isSet updatedAt }
  versions(first: 50) { number changedBy changedAt description yaml } } }`);

export const PROC_SCHEDULES = graphql(`query ConsoleProcSchedules($proc: String!) { schedules(first: 50, filter: { proc: $proc }) {
  nodes { id cron timezone enabled nextFireAt } } }`);

export const ROLLBACK = graphql(`mutation ConsoleRollback($name: String!, $version: Int!) { rollbackProc(name: $name, version: $version) { name version } }`);

export const VALIDATE = graphql(`query ConsoleValidate($proc: String!, $args: [ArgInput!]) { validateArgs(proc: $proc, args: $args) { name value } }`);

export const EXECUTE = graphql(`mutation ConsoleExecute($proc: String!, $args: [ArgInput!]) { execute(proc: $proc, args: $args) { id } }`);

export const EXECUTIONS = graphql(`query ConsoleExecutions($first: Int, $after: String, $filter: ExecutionFilter) {
  executions(first: $first, after: $after, filter: $filter) {
    pageInfo { hasNextPage endCursor }
    nodes { id procName status trigger user exitCode createdAt startedAt finishedAt } } }`);

export const EVENTS = graphql(`subscription ConsoleEvents($proc: String) { executionEvents(proc: $proc) {
  id procName status trigger user exitCode createdAt startedAt finishedAt } }`);

export const EXECUTION = graphql(`query ConsoleExecution($id: ID!) { execution(id: $id) {
  id procName status trigger user exitCode reason attempts logLinesLost procVersion scheduleId image
  createdAt startedAt finishedAt args { name value }
  notifications { channel target state attempts lastError } } }`);

export const STATUS = graphql(`subscription ConsoleStatus($id: ID!) { executionStatus(id: $id) {
  id status exitCode reason attempts startedAt finishedAt } }`);

export const LOGS = graphql(`subscription ConsoleLogs($id: ID!, $afterSeq: Int) {
  executionLogBatches(id: $id, afterSeq: $afterSeq, maxLines: 5000, maxDelayMs: 50) { lastSeq lines { seq stream line timestamp } } }`);

export const CANCEL = graphql(`mutation ConsoleCancel($id: ID!) { cancelExecution(id: $id) { id status } }`);

export const SCHEDULES = graphql(`query ConsoleSchedules($first: Int, $after: String, $filter: ScheduleFilter) {
  schedules(first: $first, after: $after, filter: $filter) { pageInfo { hasNextPage endCursor }
  nodes { id procName cron timezone enabled nextFireAt overlapPolicy createdBy } } }`);

export const SCHEDULE = graphql(`query ConsoleSchedule($id: ID!) { schedule(id: $id) {
  id procName cron timezone enabled nextFireAt overlapPolicy catchUpPolicy tags group
  notificationEmails slackWebhookConfigured webhookUrl createdBy args { name value }
  runs(first: 20) { nodes { slot firedAt outcome detail execution { id status } } } } }`);

export const CREATE_SCHEDULE = graphql(`mutation ConsoleCreateSchedule($input: ScheduleInput!) { createSchedule(input: $input) { id } }`);
export const UPDATE_SCHEDULE = graphql(`mutation ConsoleUpdateSchedule($id: ID!, $input: ScheduleInput!) { updateSchedule(id: $id, input: $input) { id } }`);
export const SET_SCHEDULE_ENABLED = graphql(`mutation ConsoleSetScheduleEnabled($id: ID!, $enabled: Boolean!) { setScheduleEnabled(id: $id, enabled: $enabled) { id enabled nextFireAt } }`);
export const TRIGGER_SCHEDULE = graphql(`mutation ConsoleTriggerSchedule($id: ID!) { triggerSchedule(id: $id) { id } }`);
export const DELETE_SCHEDULE = graphql(`mutation ConsoleDeleteSchedule($id: ID!) { deleteSchedule(id: $id) }`);
export const CRON_PREVIEW = graphql(`query ConsoleCronPreview($cron: String!, $timezone: String) { cronPreview(cron: $cron, timezone: $timezone, count: 5) }`);

export const SET_SECRETS = graphql(`mutation ConsoleSetSecrets($proc: String!, $secrets: [SecretValueInput!]!) { setSecrets(proc: $proc, secrets: $secrets) { key isSet updatedAt } }`);
export const DELETE_SECRET = graphql(`mutation ConsoleDeleteSecret($proc: String!, $key: String!) { deleteSecret(proc: $proc, key: $key) }`);

export const AUDIT = graphql(`query ConsoleAudit($first: Int, $after: String) { auditEvents(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor } nodes { actor action objectKind objectId detail createdAt } } }`);

export const CREATE_TOKEN = graphql(`mutation ConsoleCreateToken($email: String!, $groups: [String!], $admin: Boolean) { createApiToken(email: $email, groups: $groups, admin: $admin) }`);
export const REVOKE_TOKEN = graphql(`mutation ConsoleRevokeToken($email: String!) { revokeApiToken(email: $email) }`);
export const USERS = graphql(`query ConsoleUsers($first: Int, $after: String) { users(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor } nodes { email groups admin activeTokens lastUsedAt createdAt } } }`);
