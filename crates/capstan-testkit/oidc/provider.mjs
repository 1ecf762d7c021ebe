// A certified OpenID Connect provider for sign-in tests: one client `capstan` whose
// redirect URIs come from REDIRECT (comma-separated), and a development login form
// that takes any name. Prints `listening <issuer>` once it serves.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'capstan',
    client_secret: process.env.CLIENT_SECRET || 'capstan-secret',
    redirect_uris: process.env.REDIRECT.split(','),
  }],
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({
      sub: id,
      email: `${id}@example.test`,
      email_verified: true,
      preferred_username: id,
    }),
  }),
  claims: {
    email: ['email', 'email_verified'],
    profile: ['preferred_username'],
    openid: ['sub'],
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
