package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/types"
)

func (c *cli) accountCmd() *cobra.Command {
	key := groupCmd("key", "Add, list and revoke an account's API keys",
		c.accountKeyAddCmd(), c.accountKeyListCmd(), c.accountKeyRevokeCmd())
	return groupCmd("account", "Manage the gateway's accounts, their credits and their API keys (admin: the local daemon's token)",
		c.accountCreateCmd(), c.accountListCmd(), c.accountShowCmd(), c.accountCreditCmd(), c.accountLimitCmd(), key)
}

func (c *cli) accountCreditCmd() *cobra.Command {
	var memo string
	cmd := &cobra.Command{
		Use:   "credit NAME AMOUNT",
		Short: "Add credits to an account (AMOUNT in credits, exact to 0.000001)",
		Long: `Add AMOUNT credits to an account's balance, from the operator's. Calls and
jobs charged to the account are admitted while its available credits
(balance + limit - held) allow them, and get 402 Payment Required after.`,
		Args: namedArgs("NAME", "AMOUNT"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			amount, err := types.ParseCredits(args[1])
			if err != nil {
				return fmt.Errorf("AMOUNT: %w", err)
			}
			a, err := gw.Credit(ctx, args[0], amount, memo)
			if err != nil {
				return err
			}
			return c.print(a, func(w io.Writer) error { return writeAccount(w, a) })
		}),
	}
	cmd.Flags().StringVar(&memo, "memo", "", "a note kept with the entry (what the credits are for)")
	return cmd
}

func (c *cli) accountLimitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "limit NAME AMOUNT",
		Short: "Set how far below zero an account's credits may go (0: none)",
		Args:  namedArgs("NAME", "AMOUNT"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			limit, err := types.ParseCredits(args[1])
			if err != nil {
				return fmt.Errorf("AMOUNT: %w", err)
			}
			a, err := gw.SetCreditLimit(ctx, args[0], limit)
			if err != nil {
				return err
			}
			return c.print(a, func(w io.Writer) error { return writeAccount(w, a) })
		}),
	}
}

// writeAccount prints an account's fields, its credits among them.
func writeAccount(w io.Writer, a gateway.Account) error {
	cr := a.Credits
	return writeFields(w, []field{kv("name", a.Name), kv("keys", strconv.Itoa(a.Keys)), kv("created", formatTime(a.CreatedAt)),
		kv("balance", cr.Balance.String()), kv("limit", cr.Limit.String()), kv("held", cr.Held.String()), kv("available", cr.Available.String())})
}

// admin makes an account command's RunE: it connects to the local daemon
// with its admin token and explains a refused token.
func (c *cli) admin(run func(ctx context.Context, gw *gateway.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		gw, err := c.localClient("")
		if err != nil {
			return err
		}
		return explain(nil, run(cmd.Context(), gw, args))
	}
}

func (c *cli) accountCreateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "create NAME",
		Short: "Create an account and print its first API key, which is not shown again",
		Args:  oneArg("NAME"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			acc, key, err := gw.CreateAccount(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printNewKey(map[string]any{"account": acc, "key": key}, key)
		}),
	}
}

// printNewKey prints a key just made (v with --output json) and warns that
// its secret is not shown again.
func (c *cli) printNewKey(v any, key gateway.NewKey) error {
	err := c.print(v, func(w io.Writer) error {
		return writeFields(w, []field{kv("account", key.Account), kv("key id", key.ID), kv("api key", key.Secret)})
	})
	fmt.Fprintln(c.stderr, "dms: keep the API key now: it is not shown again (use it as --key or $"+envAPIKey+")")
	return err
}

func (c *cli) accountListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the accounts",
		Args:  cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			list, err := gw.ListAccounts(ctx)
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				rows := make([][]string, 0, len(list))
				for _, a := range list {
					rows = append(rows, []string{a.Name, strconv.Itoa(a.Keys), a.Credits.Available.String(), formatTime(a.CreatedAt)})
				}
				return writeTable(w, []string{"NAME", "KEYS", "AVAILABLE", "CREATED"}, rows)
			})
		}),
	}
}

func (c *cli) accountShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show an account",
		Args:  oneArg("NAME"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			a, err := gw.GetAccount(ctx, args[0])
			if err != nil {
				return err
			}
			return c.print(a, func(w io.Writer) error { return writeAccount(w, a) })
		}),
	}
}

func (c *cli) accountKeyAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "add ACCOUNT",
		Short: "Make another API key for an account, shown once",
		Args:  oneArg("ACCOUNT"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			key, err := gw.AddKey(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printNewKey(key, key)
		}),
	}
}

func (c *cli) accountKeyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list ACCOUNT",
		Short: "List an account's keys: IDs, never secrets",
		Args:  oneArg("ACCOUNT"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			keys, err := gw.ListKeys(ctx, args[0])
			if err != nil {
				return err
			}
			return c.print(keys, func(w io.Writer) error {
				rows := make([][]string, 0, len(keys))
				for _, k := range keys {
					rows = append(rows, []string{k.ID, formatTime(k.CreatedAt), formatTimePtr(k.RevokedAt)})
				}
				return writeTable(w, []string{"ID", "CREATED", "REVOKED"}, rows)
			})
		}),
	}
}

func (c *cli) accountKeyRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ACCOUNT KEYID",
		Short: "Revoke a key: it stops working at once",
		Args:  namedArgs("ACCOUNT", "KEYID"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			account, id := args[0], args[1]
			if err := gw.RevokeKey(ctx, account, id); err != nil {
				return err
			}
			return c.print(map[string]any{"account": account, "id": id, "revoked": true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "revoked key %s of account %s\n", id, account)
				return err
			})
		}),
	}
}
