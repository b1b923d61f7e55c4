/* pdctl's client subcommands: submit one request to a router, ask a router its status. */
#ifndef PD_DEPLOY_CMD_CLIENT_H
#define PD_DEPLOY_CMD_CLIENT_H

int pd_cmd_submit(int argc, char **argv);
int pd_cmd_status(int argc, char **argv);

#endif
