-- Roles and permissions (issue 15). Ids are fixed for the built-ins (see
-- porteiro_core::domain::rbac): the `admin` role grants every permission implicitly (there are
-- no role_permissions rows for it), the `user` role is given at registration. The old
-- `users.is_admin` flag becomes the `admin` role and the column goes: nothing keeps it in sync.

create table permissions (
    id          text primary key,
    name        text not null unique,
    description text not null default '',
    builtin     integer not null default 0,
    created_at  integer not null,
    updated_at  integer not null
);

create table roles (
    id          text primary key,
    name        text not null unique,
    description text not null default '',
    builtin     integer not null default 0,
    created_at  integer not null,
    updated_at  integer not null
);

create table role_permissions (
    role_id       text not null references roles(id) on delete cascade,
    permission_id text not null references permissions(id) on delete cascade,
    created_at    integer not null,
    primary key (role_id, permission_id)
);
create index role_permissions_by_permission on role_permissions(permission_id, role_id);

create table user_roles (
    user_id    text not null references users(id) on delete cascade,
    role_id    text not null references roles(id) on delete cascade,
    created_at integer not null,
    primary key (user_id, role_id)
);
create index user_roles_by_role on user_roles(role_id, user_id);

insert into roles (id, name, description, builtin, created_at, updated_at) values
    ('00000000-0000-4000-8000-000000000001', 'admin', 'Every permission, including ones added later.', 1,
     cast((julianday('now') - 2440587.5) * 86400000 as integer), cast((julianday('now') - 2440587.5) * 86400000 as integer)),
    ('00000000-0000-4000-8000-000000000002', 'user', 'Every account; given at registration.', 1,
     cast((julianday('now') - 2440587.5) * 86400000 as integer), cast((julianday('now') - 2440587.5) * 86400000 as integer));

insert into permissions (id, name, description, builtin, created_at, updated_at)
select column1, column2, column3, 1, cast((julianday('now') - 2440587.5) * 86400000 as integer), cast((julianday('now') - 2440587.5) * 86400000 as integer)
from (values
    ('00000000-0000-4000-8001-000000000001', 'permissions:manage', 'Create, rename and delete permissions.'),
    ('00000000-0000-4000-8001-000000000002', 'roles:manage', 'Create, rename and delete roles.'),
    ('00000000-0000-4000-8001-000000000003', 'roles:assign-permission', 'Grant permissions to roles and take them back.'),
    ('00000000-0000-4000-8001-000000000004', 'users:assign-role', 'Give roles to users and take them back.'),
    ('00000000-0000-4000-8001-000000000005', 'users:read', 'List and read other users'' accounts, roles, sessions and permissions.'),
    ('00000000-0000-4000-8001-000000000006', 'users:manage', 'Change, disable, unlock, sign out and delete other users'' accounts.'),
    ('00000000-0000-4000-8001-000000000007', 'audit:read', 'Read every account''s audit events.'),
    ('00000000-0000-4000-8001-000000000008', 'webhooks:manage', 'Create, change and delete webhook endpoints and read their deliveries.'),
    ('00000000-0000-4000-8001-000000000009', 'system:maintain', 'Run maintenance jobs (clean expired tokens, codes and sessions).'),
    ('00000000-0000-4000-8001-00000000000a', 'security_questions:manage', 'Create, change and deactivate security questions.'),
    ('00000000-0000-4000-8001-00000000000b', 'tokens:introspect', 'Introspect tokens (RFC 7662) with a bearer token.')
);

insert into user_roles (user_id, role_id, created_at)
select id, '00000000-0000-4000-8000-000000000002', created_at from users;
insert into user_roles (user_id, role_id, created_at)
select id, '00000000-0000-4000-8000-000000000001', updated_at from users where is_admin;

alter table users drop column is_admin;

-- The administrators' user list: in creation order. Prefix search on the username key and the
-- (already lower-case) email is a range over their unique indexes (binary collation).
create index users_by_created on users(created_at, id);
